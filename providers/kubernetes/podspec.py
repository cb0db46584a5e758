"""How a change becomes a pod template: a documented, configurable mapping.

Pure functions over the pod template as the API server sends it (camelCase JSON), so the
mapping is testable without a cluster. Defaults (docs/actuators.md has the table):

=================  ==========================================================================
change key         pod template
=================  ==========================================================================
``engine_args``    the container's ``args``: ``--max-num-seqs=256`` replaces ``--max-num-seqs
                   128`` or ``--max-num-seqs=128``; ``true`` → ``--flag``, ``false`` →
                   ``--no-flag`` (vLLM's boolean flags); ``null`` removes the flag. With
                   ``engine_args_as: env``: an environment variable ``<env_prefix><NAME>``.
``image``          the container's ``image``
``gpu_count``      ``resources.limits[<gpu_resource>]`` (and ``requests`` if set)
``gpu``            ``nodeSelector[<gpu_node_label>]`` (value via ``gpu_label_values``)
``instance_type``  ``nodeSelector[<instance_type_label>]``
``market``         ``nodeSelector[<market_node_label>]`` (value via ``market_label_values``);
                   ``spot_tolerations`` are added for spot
=================  ==========================================================================
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from providers.actuation.records import Change

#: Change keys that alter the pod template (the rest only move replica counts).
POD_KEYS = frozenset({"engine_args", "image", "gpu", "gpu_count", "instance_type", "market"})


class PodMapping(BaseModel):
    """Where each kind of change goes in the pod template."""

    model_config = ConfigDict(extra="forbid")

    container: str | None = Field(
        default=None, description="Container that runs the engine (default: the first)."
    )
    engine_args_as: Literal["args", "env"] = Field(
        default="args", description="Engine arguments as container args or env variables."
    )
    arg_prefix: str = Field(default="--", description="Prefix of a flag (`--max-num-seqs`).")
    env_prefix: str = Field(default="", description="Prefix of an env variable name.")
    arg_names: dict[str, str] = Field(
        default_factory=dict,
        description="Engine argument → flag or env name where the engine's differs, e.g. "
        "{max_num_seqs: --max-concurrent-requests} for TGI.",
    )
    gpu_resource: str = Field(default="nvidia.com/gpu", description="Extended GPU resource.")
    gpu_node_label: str = Field(
        default="nvidia.com/gpu.product", description="Node label that names the GPU model."
    )
    gpu_label_values: dict[str, str] = Field(
        default_factory=dict,
        description="Catalog GPU name → that label's value, e.g. {L4: NVIDIA-L4}.",
    )
    instance_type_label: str = Field(
        default="node.kubernetes.io/instance-type", description="Node label of instance type."
    )
    market_node_label: str = Field(
        default="karpenter.sh/capacity-type",
        description="Node label of the capacity market (EKS: eks.amazonaws.com/capacityType).",
    )
    market_label_values: dict[str, str] = Field(
        default_factory=lambda: {"spot": "spot", "on-demand": "on-demand"},
        description="Market → that label's value (EKS: {spot: SPOT, on-demand: ON_DEMAND}).",
    )
    spot_tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="Tolerations added to pods moved to spot nodes."
    )


def engine_container(template: dict[str, Any], mapping: PodMapping) -> dict[str, Any]:
    """The container that runs the engine, in ``template`` (mutable)."""
    containers = template.get("spec", {}).get("containers") or []
    if not containers:
        raise ValueError("the pod template has no containers")
    if mapping.container is None:
        return containers[0]
    for c in containers:
        if c.get("name") == mapping.container:
            return c
    names = [c.get("name") for c in containers]
    raise ValueError(f"no container named {mapping.container!r} (containers: {names})")


def set_flag(args: list[str], flag: str, value: Any) -> list[str]:
    """``args`` with ``flag`` set to ``value`` (``flag value`` and ``flag=value`` forms)."""
    negated = "--no-" + flag.removeprefix("--") if flag.startswith("--") else ""
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token in (flag, negated):
            following = args[i + 1] if i + 1 < len(args) else None
            # a boolean flag stands alone; a valued one takes the next token
            takes_value = token == flag and following is not None and not following.startswith("-")
            i += 2 if takes_value else 1
            continue
        if token.startswith(flag + "="):
            i += 1
            continue
        out.append(token)
        i += 1
    if value is None:
        return out
    if isinstance(value, bool):
        out.append(flag if value else (negated or flag + "=false"))
    else:
        out.append(f"{flag}={value}")
    return out


def set_env(env: list[dict[str, Any]], name: str, value: Any) -> list[dict[str, Any]]:
    kept = [e for e in env if e.get("name") != name]
    if value is None:
        return kept
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return [*kept, {"name": name, "value": text}]


def apply_change(template: dict[str, Any], change: Change, mapping: PodMapping) -> dict[str, Any]:
    """A copy of the pod ``template`` with ``change`` applied (keys outside
    :data:`POD_KEYS` are ignored here: they move replica counts)."""
    out = copy.deepcopy(template)
    spec = out.setdefault("spec", {})
    container = engine_container(out, mapping)
    for name, value in change.engine_args.items():
        if mapping.engine_args_as == "args":
            flag = mapping.arg_names.get(name) or mapping.arg_prefix + name.replace("_", "-")
            container["args"] = set_flag(list(container.get("args") or []), flag, value)
        else:
            env_name = mapping.arg_names.get(name) or mapping.env_prefix + name.upper()
            container["env"] = set_env(list(container.get("env") or []), env_name, value)
    if change.image is not None:
        container["image"] = change.image
    if change.gpu_count is not None:
        resources = container.setdefault("resources", {})
        resources.setdefault("limits", {})[mapping.gpu_resource] = str(change.gpu_count)
        if mapping.gpu_resource in (resources.get("requests") or {}):
            resources["requests"][mapping.gpu_resource] = str(change.gpu_count)
    selector: dict[str, str] = dict(spec.get("nodeSelector") or {})
    if change.gpu is not None:
        selector[mapping.gpu_node_label] = mapping.gpu_label_values.get(change.gpu, change.gpu)
    if change.instance_type is not None:
        selector[mapping.instance_type_label] = change.instance_type
    if change.market is not None:
        selector[mapping.market_node_label] = mapping.market_label_values.get(
            change.market, change.market
        )
        if change.market == "spot" and mapping.spot_tolerations:
            tolerations = list(spec.get("tolerations") or [])
            tolerations += [t for t in mapping.spot_tolerations if t not in tolerations]
            spec["tolerations"] = tolerations
    if selector:
        spec["nodeSelector"] = selector
    return out


def summary(template: dict[str, Any], mapping: PodMapping) -> dict[str, Any]:
    """What a person compares between variants: the engine container and node choice."""
    try:
        container = engine_container(template, mapping)
    except ValueError:
        container = {}
    spec = template.get("spec", {})
    return {
        "image": container.get("image"),
        "args": container.get("args") or [],
        "env": container.get("env") or [],
        "resources": container.get("resources") or {},
        "nodeSelector": spec.get("nodeSelector") or {},
    }
