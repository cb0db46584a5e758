"""The records every actuator speaks: what to change, where, what runs, what to go back to.

All of them are plain pydantic models that round-trip through JSON, because the rollout
flow stores them between steps: a :class:`Baseline` written before the first step is all
a new process needs to revert a rollout whose previous process died half-way. Nothing an
actuator needs to undo a change lives only in its memory.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

#: Engine arguments that agents sometimes emit at the top level of a change
#: (``{"quantization": "fp8"}``); :class:`Change` moves them under ``engine_args``.
TOP_LEVEL_ENGINE_ARGS = frozenset({"quantization", "kv_cache_dtype"})


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text (and hashes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest(value: Any, length: int = 16) -> str:
    """A short stable hash of a JSON-able value."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


class Target(BaseModel):
    """The deployment a change is applied to, as the recommendation names it."""

    model_config = ConfigDict(frozen=True)

    tenant: str = Field(default="default", description="Tenant that owns the deployment.")
    provider: str = Field(description="Provider entry (providers.yaml name) it runs under.")
    deployment: str = Field(min_length=1, description="Deployment name at that provider.")

    def __str__(self) -> str:
        return f"{self.tenant}/{self.provider}/{self.deployment}"


class Change(BaseModel):
    """A recommendation's machine-readable change (``Recommendation.change``).

    The known keys are typed; unknown ones are kept (``extra="allow"``) so that an
    actuator can refuse them by name instead of dropping them silently. Example::

        Change.model_validate({"quantization": "fp8", "engine_args": {"max_num_seqs": 64}})
        # -> engine_args == {"max_num_seqs": 64, "quantization": "fp8"}
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="Engine arguments by vLLM name (max_num_seqs, ...)."
    )
    image: str | None = Field(default=None, description="Container image (Kubernetes).")
    model: str | None = Field(default=None, description="Model served.")
    engine: str | None = Field(default=None, description="Engine kind (vllm, sglang, tgi).")
    gpu: str | None = Field(default=None, description="GPU type, as in the catalog (L4, H100).")
    gpu_count: NonNegativeInt | None = Field(default=None, description="GPUs per replica.")
    instance_type: str | None = Field(default=None, description="Cloud instance type.")
    market: Literal["spot", "on-demand"] | None = Field(default=None, description="Market.")
    replicas: NonNegativeInt | None = Field(
        default=None, description="New total replica count once fully rolled out."
    )
    replicas_to_spot: NonNegativeInt | None = Field(
        default=None,
        description="Spot migration: how many replicas ever receive the change (the rest "
        "keep the baseline); default every replica.",
    )

    @model_validator(mode="before")
    @classmethod
    def _engine_args_at_top(cls, data: Any) -> Any:
        if isinstance(data, dict) and TOP_LEVEL_ENGINE_ARGS & set(data):
            data = dict(data)
            moved = {k: data.pop(k) for k in TOP_LEVEL_ENGINE_ARGS & set(data)}
            data["engine_args"] = {**(data.get("engine_args") or {}), **moved}
        return data

    def as_dict(self) -> dict[str, Any]:
        """The change as a plain dict with only the keys that were given."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)

    def keys(self) -> frozenset[str]:
        return frozenset(self.as_dict())

    @property
    def key(self) -> str:
        """A stable hash of the change (the same change always gives the same key)."""
        return digest(self.as_dict())

    @property
    def scales(self) -> bool:
        """Whether the change sets a new replica count."""
        return self.replicas is not None


class Baseline(BaseModel):
    """What ran before a rollout: taken by :meth:`Actuator.snapshot`, stored by the caller,
    handed back to :meth:`Actuator.apply` and :meth:`Actuator.revert`.

    ``config`` is the deployment's configuration in the actuator's own terms (a sandbox
    server's changeable fields, a Kubernetes pod template, ...); ``units`` holds one
    configuration per unit where units may differ (sandbox servers); ``data`` anything
    else the actuator needs (resource versions, names)."""

    model_config = ConfigDict(frozen=True)

    target: Target
    kind: str = Field(description="Actuator kind that took it.")
    captured_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    replicas: NonNegativeInt = Field(description="Replicas running the baseline when taken.")
    config: dict[str, Any] = Field(default_factory=dict)
    units: dict[str, dict[str, Any]] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)


Role = Literal["baseline", "canary", "unknown"]


class Variant(BaseModel):
    """One configuration running now, and how much of the deployment runs it."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Deployment name, or the configuration's key.")
    role: Role = "unknown"
    config_id: str = Field(default="", description="Stable id of the configuration.")
    config: dict[str, Any] = Field(default_factory=dict)
    replicas: NonNegativeInt = 0
    ready_replicas: NonNegativeInt = 0
    share: float = Field(default=0.0, ge=0, le=1, description="Share of replicas (0-1).")
    members: list[str] = Field(default_factory=list, description="Servers or pods, if known.")


class RunningState(BaseModel):
    """What runs now, read back from the provider (never from the actuator's memory)."""

    model_config = ConfigDict(frozen=True)

    target: Target
    kind: str
    observed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    variants: list[Variant] = Field(default_factory=list)
    detail: str = ""

    @property
    def replicas(self) -> int:
        return sum(v.replicas for v in self.variants)

    @property
    def canary_share(self) -> float:
        """Share of replicas that run the change (0 when nothing is rolled out)."""
        return sum(v.share for v in self.variants if v.role == "canary")

    def variant(self, role: Role) -> Variant | None:
        return next((v for v in self.variants if v.role == role), None)


Action = Literal["apply", "revert", "promote"]


class ActuationStatus(BaseModel):
    """The answer to one apply / revert / promote: what was asked, what now runs."""

    model_config = ConfigDict(frozen=True)

    target: Target
    kind: str
    action: Action
    fraction: float = Field(ge=0, le=1, description="Share of the deployment asked for.")
    achieved_fraction: float = Field(ge=0, le=1, description="Share running the change now.")
    changed: NonNegativeInt = Field(
        description="Units (servers, Deployments, webhook calls) this call modified; 0 when "
        "it was already so (a repeated step)."
    )
    done: bool = Field(description="Read back and running as asked (replicas ready).")
    idempotency_key: str = ""
    detail: str = ""
    running: RunningState


def step_key(action: Action, target: Target, change: Change | None, fraction: float) -> str:
    """The idempotency key of one step: the same step always has the same key."""
    return digest(
        {
            "action": action,
            "target": target.model_dump(),
            "change": change.as_dict() if change is not None else None,
            "fraction": round(fraction, 6),
        },
        length=32,
    )
