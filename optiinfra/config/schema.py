"""The ``providers.yaml`` schema: tenants, providers, SLOs, policies, LLM, stores.

Credentials are never written in the file: a provider names the *environment
variables* that hold them (``credentials: {api_key: RUNPOD_API_KEY}``) and
:mod:`optiinfra.secrets` reads them when an adapter needs them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """``900``, ``"900s"``, ``"15m"``, ``"1.5h"``, ``"1d"`` → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m or 1h")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"invalid duration {value!r}; expected e.g. 30s, 15m, 1h or a number of seconds")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Name = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]([a-z0-9_.-]{0,62}[a-z0-9])?$"),
]
EnvVarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tenant(_Section):
    """A customer whose fleet OptiInfra looks after (the seeds say "customer")."""

    name: Name
    display_name: str = ""
    budget_usd_per_month: float | None = Field(default=None, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)


class ProviderConfig(_Section):
    """One source of data (and, later, one place changes are applied)."""

    name: Name = Field(description="Unique name; appears on every sample as `provider`.")
    kind: str = Field(description="Adapter kind, e.g. local, prometheus, aws, runpod.")
    enabled: bool = True
    tenant: Name = "default"
    region: str = ""
    prometheus_url: AnyHttpUrl | None = Field(
        default=None, description="PromQL API base URL (Prometheus, Thanos, Mimir, ...)."
    )
    dcgm_url: AnyHttpUrl | None = Field(default=None, description="DCGM exporter /metrics URL.")
    metrics_urls: list[AnyHttpUrl] = Field(
        default_factory=list, description="/metrics endpoints scraped directly."
    )
    credentials: dict[str, EnvVarName] = Field(
        default_factory=dict,
        description="Credential name → environment variable that holds it.",
    )
    interval: Duration = Field(default=900.0, description="Collection interval (default 15m).")
    timeout: Duration = Field(default=60.0, description="Per-collection timeout.")
    labels: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(
        default_factory=dict, description="Adapter-specific settings, checked by the adapter."
    )


class SLO(_Section):
    """Latency and error targets for a tenant's deployments (``*`` = all)."""

    tenant: Name = "default"
    deployment: str = "*"
    ttft_p95_seconds: float | None = Field(default=None, gt=0)
    itl_p95_seconds: float | None = Field(default=None, gt=0)
    e2e_p95_seconds: float | None = Field(default=None, gt=0)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)


ChangeKind = Literal[
    "spot_migration",
    "right_size",
    "reserved_capacity",
    "idle_shutdown",
    "engine_tuning",
    "quantization",
    "parallelism",
    "autoscaling",
    "consolidation",
]


class Policy(_Section):
    """What a tenant allows OptiInfra to propose."""

    tenant: Name = "default"
    max_quality_drop: float = Field(
        default=0.10, ge=0, le=1, description="Largest relative quality drop accepted."
    )
    forbidden_changes: list[ChangeKind] = Field(default_factory=list)
    budget_usd_per_month: float | None = Field(default=None, ge=0)
    max_rollout_percent: int = Field(default=100, ge=1, le=100)


class LLMConfig(_Section):
    """Who writes the explanations. Numbers never come from the LLM."""

    provider: Literal["none", "groq", "openai-compatible"] = "none"
    model: str | None = None
    base_url: AnyHttpUrl | None = None
    api_key_env: EnvVarName | None = None
    timeout: Duration = 30.0

    @model_validator(mode="after")
    def _needs(self) -> LLMConfig:
        if self.provider == "openai-compatible" and self.base_url is None:
            raise ValueError("provider openai-compatible needs base_url")
        return self

    def effective_api_key_env(self) -> str | None:
        if self.api_key_env:
            return self.api_key_env
        return "GROQ_API_KEY" if self.provider == "groq" else None


class StoreURLs(_Section):
    """Store URLs; ``OPTIINFRA_*_URL`` environment variables take precedence."""

    metrics_url: str | None = None
    state_url: str | None = None
    memory_url: str | None = None


class OptiInfraConfig(_Section):
    """The whole ``providers.yaml``."""

    version: Literal[1] = 1
    tenants: list[Tenant] = Field(default_factory=lambda: [Tenant(name="default")])
    providers: list[ProviderConfig] = Field(default_factory=list)
    slos: list[SLO] = Field(default_factory=list)
    policies: list[Policy] = Field(default_factory=list)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    stores: StoreURLs = Field(default_factory=StoreURLs)

    def enabled_providers(self) -> list[ProviderConfig]:
        return [p for p in self.providers if p.enabled]

    def provider(self, name: str) -> ProviderConfig:
        for p in self.providers:
            if p.name == name:
                return p
        raise KeyError(name)
