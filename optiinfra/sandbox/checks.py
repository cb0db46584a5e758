"""Whether a deployment can be simulated, and what a change to a running one gives.

Shared by fleet loading (every deployment of a fleet file), the control API (a change to
a whole deployment) and a server's admin endpoint (a change to one replica), so all three
accept and refuse the same things with the same reasons.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from optiinfra.catalog import gpu_spec, model_spec
from optiinfra.errors import OptiInfraError
from optiinfra.sandbox.http import HTTPError
from optiinfra.sandbox.perf import StepTimeModel
from optiinfra.sandbox.pricing import server_price
from optiinfra.sandbox.spec import DeploymentSpec

#: What a running deployment (or one replica) can be changed in: what an actuator changes.
CHANGEABLE = frozenset({"engine_args", "gpu", "model", "market", "engine"})


def deployment_problems(d: DeploymentSpec) -> list[tuple[str, str]]:
    """What keeps a deployment from being simulated: (field, message) pairs."""
    problems: list[tuple[str, str]] = []
    try:
        gpu = gpu_spec(d.gpu)
    except OptiInfraError as exc:
        problems.append(("gpu", str(exc)))
        gpu = None
    try:
        model = model_spec(d.model)
    except OptiInfraError as exc:
        problems.append(("model", str(exc)))
        model = None
    if gpu is not None and model is not None:
        try:
            StepTimeModel(gpu, model, d.engine_args)
        except OptiInfraError as exc:
            problems.append(("engine_args", str(exc)))
        if d.engine_args.max_model_len and d.engine_args.max_model_len > model.max_context:
            problems.append(
                (
                    "engine_args.max_model_len",
                    f"{d.engine_args.max_model_len} exceeds the {model.max_context}-token context "
                    f"of {model.name}",
                )
            )
        try:
            server_price(d)
        except OptiInfraError as exc:
            problems.append(("gpu", f"no price for it: {exc}"))
    return problems


def changed_spec(
    spec: DeploymentSpec, changes: Any, *, extra_keys: Iterable[str] = ()
) -> DeploymentSpec:
    """``spec`` with ``changes`` applied (``engine_args`` merged key by key), checked as a
    fleet file's deployment would be; an :class:`HTTPError` 400 saying why otherwise.
    ``extra_keys`` are accepted (and ignored) for the caller to handle."""
    if not isinstance(changes, dict):
        raise HTTPError(400, "the body must be a JSON object of changes")
    allowed = CHANGEABLE | set(extra_keys)
    unknown = set(changes) - allowed
    if unknown:
        raise HTTPError(400, f"cannot change {sorted(unknown)}; changeable: {sorted(allowed)}")
    merged = spec.model_dump()
    for key in CHANGEABLE & set(changes):
        if key == "engine_args":
            if not isinstance(changes[key], dict):
                raise HTTPError(400, "engine_args must be an object")
            merged[key] = {**merged[key], **changes[key]}
        else:
            merged[key] = changes[key]
    try:
        changed = DeploymentSpec.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise HTTPError(400, f"invalid configuration: {where}: {first['msg']}") from None
    problems = deployment_problems(changed)
    if problems:
        detail = "; ".join(f"{field}: {message}" for field, message in problems)
        raise HTTPError(400, f"invalid configuration: {detail}")
    return changed
