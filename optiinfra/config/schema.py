"""The ``providers.yaml`` schema: tenants, providers, SLOs, policies, LLM, stores.

Credentials are never written in the file: a provider names the *environment
variables* that hold them (``credentials: {api_key: RUNPOD_API_KEY}``) and
:mod:`optiinfra.secrets` reads them when an adapter needs them.

Checks that span sections (duplicate names, a provider naming an undeclared tenant)
live in :func:`consistency_problems`, which works on plain data so that the loader
can run it even when other fields are invalid and report every problem at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

#: The tenant every provider, SLO and policy belongs to unless it names another; it is
#: always declared, whether or not ``tenants:`` lists it.
DEFAULT_TENANT = "default"

#: pydantic error type of :meth:`OptiInfraConfig._consistent`; the loader reports these
#: problems itself, one per place, so it drops errors of this type.
CONSISTENCY_ERROR = "config_consistency"

#: URL schemes each store accepts (see DESIGN.md, "The stores").
STORE_SCHEMES: dict[str, frozenset[str]] = {
    "metrics_url": frozenset({"chdb", "clickhouse", "clickhouses"}),
    "state_url": frozenset({"sqlite", "postgresql", "postgresql+psycopg", "postgres"}),
    "memory_url": frozenset({"qdrant", "http", "https"}),
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_NAME = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,62}[a-z0-9])?$")
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def parse_duration(value: Any) -> float:
    """``900``, ``"900s"``, ``"15m"``, ``"1.5h"``, ``"1d"`` → seconds.

    Raises ``ValueError`` (which pydantic reports against the field) for anything else,
    including booleans and infinite or absurdly large values.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m or 1h, not a boolean")
    seconds: float | None = None
    if isinstance(value, int | float):
        seconds = float(value) if abs(value) < 1e15 else math.inf
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds is None:
        shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "…"
        raise ValueError(
            f"invalid duration {shown!r}; expected e.g. 30s, 15m, 1h or a number of seconds"
        )
    if not math.isfinite(seconds) or seconds > 366 * 86400:
        raise ValueError("duration must be finite and at most a year")
    return seconds


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            "a name uses lowercase letters, digits, '-', '_' or '.', starts and ends with "
            "a letter or digit, and has at most 64 characters"
        )
    return value


def _check_env_var_name(value: str) -> str:
    # Never echo the value: someone may have pasted the secret itself here.
    if not _ENV_VAR.match(value):
        raise ValueError(
            "expected the NAME of an environment variable (letters, digits and '_', "
            "not starting with a digit), never the secret itself"
        )
    return value


def _scalar_to_str(value: Any) -> Any:
    """Labels are strings, but ``zone: 1`` in YAML is a number; accept it as ``"1"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Name = Annotated[str, AfterValidator(_check_name)]
EnvVarName = Annotated[str, AfterValidator(_check_env_var_name)]
LabelValue = Annotated[str, BeforeValidator(_scalar_to_str)]
Labels = dict[str, LabelValue]


def _check_store_url(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    match = _URL_SCHEME.match(value)
    allowed = STORE_SCHEMES[field]
    if not match or match.group(1).lower() not in allowed:
        schemes = ", ".join(f"{s}://" for s in sorted(allowed))
        raise ValueError(f"expected a URL starting with one of {schemes}")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Tenant(_Section):
    """A customer whose fleet OptiInfra looks after (the seeds say "customer")."""

    name: Name = Field(description="Unique tenant name; providers, SLOs and policies refer to it.")
    display_name: str = Field(default="", description="Name shown to people (reports, UI).")
    budget_usd_per_month: float | None = Field(
        default=None, ge=0, description="Monthly spend the tenant expects, in US dollars."
    )
    labels: Labels = Field(
        default_factory=dict, description="Free-form labels copied into reports."
    )


#: The provider kind whose entries carry a ``quality:`` section (providers/quality).
QUALITY_KIND = "quality"
#: Where the ``groq`` judge is reached (Groq's OpenAI-compatible API root).
GROQ_BASE_URL = "https://api.groq.com/openai/v1"


def _check_source_url(value: str | None) -> str | None:
    """An http(s) URL that may hold ``{start}``/``{end}`` placeholders (kept as written)."""
    if value is None:
        return None
    try:
        parts = urlsplit(value.replace("{start}", "start").replace("{end}", "end"))
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL")
    return value


class QualityTarget(_Section):
    """One deployment endpoint that golden-set probes are sent to."""

    deployment: str = Field(
        min_length=1, description="Deployment name recorded on this endpoint's quality events."
    )
    base_url: AnyHttpUrl = Field(
        description="OpenAI-compatible API root, e.g. http://vllm-1:8000/v1; probes POST to "
        "<base_url>/chat/completions (or /completions)."
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        description="Model name sent with each probe (default: the first of GET "
        "<base_url>/models).",
    )
    api: Literal["chat", "completions"] = Field(
        default="chat", description="Which endpoint probes use: chat or completions."
    )
    credential: str | None = Field(
        default=None,
        min_length=1,
        description="Name of an entry of this provider's credentials, sent as a bearer token.",
    )
    config_id: str = Field(
        default="",
        description="Configuration id recorded when the server sends no x-optiinfra-config-id "
        "header.",
    )


class QualityJudge(_Section):
    """The optional LLM that grades answers (0-1). ``provider: none`` grades nothing."""

    provider: Literal["none", "groq", "openai-compatible"] = Field(
        default="none", description="none (no judge score), groq, or openai-compatible."
    )
    model: str | None = Field(
        default=None, min_length=1, description="Judge model name; required unless provider none."
    )
    base_url: AnyHttpUrl | None = Field(
        default=None,
        description="API root (…/v1); required for openai-compatible, default for groq: "
        + GROQ_BASE_URL
        + ".",
    )
    credential: str | None = Field(
        default=None,
        min_length=1,
        description="Name of an entry of this provider's credentials holding the judge's API "
        "key; required for groq.",
    )
    timeout: Duration = Field(default=30.0, description="Per-request timeout of the judge.")
    max_per_run: int = Field(
        default=100, ge=0, le=100_000, description="Most answers the judge grades in one run."
    )

    @model_validator(mode="after")
    def _needs(self) -> QualityJudge:
        if self.provider != "none" and self.model is None:
            raise ValueError(f"judge provider {self.provider} needs model")
        if self.provider == "openai-compatible" and self.base_url is None:
            raise ValueError("judge provider openai-compatible needs base_url")
        if self.provider == "groq" and self.credential is None:
            raise ValueError("judge provider groq needs credential (its API key)")
        return self


class QualityInteractions(_Section):
    """Where sampled real interactions are read from (formats: docs/quality.md)."""

    path: str | None = Field(
        default=None, min_length=1, description="A JSONL or JSON file of interactions."
    )
    url: Annotated[str | None, AfterValidator(_check_source_url)] = Field(
        default=None,
        description="An http(s) URL answering JSONL or JSON; {start} and {end} are replaced by "
        "the window's ISO-8601 times.",
    )
    format: Literal["auto", "optiinfra", "otel", "langfuse"] = Field(
        default="auto", description="Record format; auto recognises each record's shape."
    )
    deployment: str | None = Field(
        default=None,
        min_length=1,
        description="Deployment for records that name none (else their model name).",
    )
    sample_rate: float = Field(
        default=1.0, ge=0, le=1, description="Share of the window's interactions scored (0-1)."
    )
    max_per_run: int = Field(
        default=200, ge=0, le=100_000, description="Most interactions scored in one run."
    )
    credential: str | None = Field(
        default=None,
        min_length=1,
        description="Name of an entry of this provider's credentials sent with url requests.",
    )
    auth: Literal["bearer", "basic"] = Field(
        default="bearer",
        description="How the credential is sent: bearer token, or basic (value user:password).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> QualityInteractions:
        if (self.path is None) == (self.url is None):
            raise ValueError("interactions need exactly one of path or url")
        return self


class QualitySettings(_Section):
    """What a ``quality`` provider measures: golden-set probes, sampled interactions."""

    golden_set: str | None = Field(
        default=None,
        min_length=1,
        description="Golden-set file (.jsonl, .yaml or .yml); relative to the working directory.",
    )
    targets: list[QualityTarget] = Field(
        default_factory=list, description="Endpoints the golden set is sent to."
    )
    probes_per_run: int = Field(
        default=50,
        ge=0,
        le=100_000,
        description="Golden-set items sent to each target per run; successive runs take the "
        "next ones, so the whole set is covered.",
    )
    max_tokens: int = Field(
        default=32, ge=1, le=4096, description="max_tokens of each probe (answers are short)."
    )
    system_prompt: str | None = Field(
        default=None, description="System message put before each probe's prompt."
    )
    concurrency: int = Field(
        default=8, ge=1, le=256, description="Most requests in flight at once (probes and judge)."
    )
    request_timeout: Duration = Field(default=30.0, description="Timeout of one probe request.")
    interactions: QualityInteractions | None = Field(
        default=None, description="Sampled real interactions to score."
    )
    judge: QualityJudge = Field(
        default_factory=QualityJudge, description="LLM judge (default none: no judge score)."
    )

    @model_validator(mode="after")
    def _something_to_do(self) -> QualitySettings:
        if self.golden_set is not None and not self.targets:
            raise ValueError("golden_set needs at least one entry in targets")
        if self.targets and self.golden_set is None:
            raise ValueError("targets need a golden_set to send")
        if self.golden_set is None and self.interactions is None:
            raise ValueError("give a golden_set with targets, or interactions, or both")
        return self


class ActuatorSection(_Section):
    """How changes are applied at a provider (``actuator:`` of a provider entry).

    The kinds and their options are the actuators' own (docs/actuators.md); they are
    checked when the rollout builds the actuator, since ``optiinfra`` may not import
    ``providers``. A ``sandbox`` provider without this section gets the sandbox actuator
    on its own ``control_url``."""

    kind: str = Field(min_length=1, description="Actuator kind: sandbox, kubernetes, webhook.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Kind-specific settings (docs/actuators.md)."
    )
    credentials: dict[str, EnvVarName] = Field(
        default_factory=dict,
        description="Credential name → environment variable that holds it (never the value).",
    )


class ProviderConfig(_Section):
    """One source of data (and, later, one place changes are applied)."""

    name: Name = Field(description="Unique name; appears on every sample as `provider`.")
    kind: str = Field(
        min_length=1, description="Adapter kind, e.g. local, prometheus, aws, runpod."
    )
    enabled: bool = Field(
        default=True,
        description="Collect from this provider. Disabled providers are validated but "
        "their credential environment variables are not required.",
    )
    tenant: Name = Field(
        default=DEFAULT_TENANT, description="Tenant that owns this provider's resources."
    )
    region: str = Field(default="", description="Region or site, recorded on every sample.")
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
    retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries of a failed or timed-out collection, with backoff and jitter.",
    )
    labels: Labels = Field(default_factory=dict, description="Extra labels added to every sample.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Adapter-specific settings, checked by the adapter."
    )
    quality: QualitySettings | None = Field(
        default=None,
        description="Only for kind quality: golden-set probes, sampled interactions and the "
        "judge (docs/quality.md).",
    )
    actuator: ActuatorSection | None = Field(
        default=None,
        description="How approved changes are applied here (docs/actuators.md); a sandbox "
        "provider defaults to the sandbox actuator on its control_url.",
    )


class SLO(_Section):
    """Latency and error targets for a tenant's deployments (``*`` = all)."""

    tenant: Name = Field(default=DEFAULT_TENANT, description="Tenant the targets apply to.")
    deployment: str = Field(
        default="*", min_length=1, description="Deployment name, or * for all of the tenant's."
    )
    ttft_p95_seconds: float | None = Field(
        default=None, gt=0, description="95th-percentile time to first token, in seconds."
    )
    itl_p95_seconds: float | None = Field(
        default=None, gt=0, description="95th-percentile inter-token latency, in seconds."
    )
    e2e_p95_seconds: float | None = Field(
        default=None, gt=0, description="95th-percentile end-to-end request latency, in seconds."
    )
    max_error_rate: float | None = Field(
        default=None, ge=0, le=1, description="Largest accepted share of failed requests (0-1)."
    )


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

    tenant: Name = Field(default=DEFAULT_TENANT, description="Tenant the policy applies to.")
    max_quality_drop: float = Field(
        default=0.10, ge=0, le=1, description="Largest relative quality drop accepted."
    )
    forbidden_changes: list[ChangeKind] = Field(
        default_factory=list, description="Kinds of change never proposed for this tenant."
    )
    budget_usd_per_month: float | None = Field(
        default=None, ge=0, description="Monthly spend a plan must keep under, in US dollars."
    )
    max_rollout_percent: int = Field(
        default=100, ge=1, le=100, description="Largest share of a deployment a rollout reaches."
    )


class LLMConfig(_Section):
    """Who writes the explanations. Numbers never come from the LLM."""

    provider: Literal["none", "groq", "openai-compatible"] = Field(
        default="none",
        description="groq, openai-compatible (needs base_url) or none (template text).",
    )
    model: str | None = Field(default=None, description="Model name; default: the client's.")
    base_url: AnyHttpUrl | None = Field(
        default=None, description="API base URL; required for openai-compatible."
    )
    api_key_env: EnvVarName | None = Field(
        default=None,
        description="Environment variable holding the API key (groq default: GROQ_API_KEY).",
    )
    timeout: Duration = Field(default=30.0, description="Per-request timeout.")

    @model_validator(mode="after")
    def _needs(self) -> LLMConfig:
        if self.provider == "openai-compatible" and self.base_url is None:
            raise ValueError("provider openai-compatible needs base_url")
        return self

    def effective_api_key_env(self) -> str | None:
        """The variable the key is read from, or ``None`` when no key is needed."""
        if self.api_key_env:
            return self.api_key_env
        return "GROQ_API_KEY" if self.provider == "groq" else None


class OptimizeSettings(_Section):
    """How the optimize flow reads the fleet and when agents speak up."""

    interval: Duration = Field(
        default=3600.0, description="How often the served optimize deployment runs (1h)."
    )
    window: Duration = Field(
        default=3600.0, description="Recent window of serving metrics agents analyse (1h)."
    )
    idle_min_observed: Duration = Field(
        default=600.0,
        description="Observed span of engine metrics needed before a deployment is called "
        "idle; with less it is 'unknown', never 'idle'.",
    )
    min_saving_usd_per_month: float = Field(
        default=25.0, ge=0, description="Smallest monthly saving worth proposing."
    )
    approval: Literal["auto", "wait", "skip"] = Field(
        default="auto",
        description="Whether a run pauses for a person's approval of its plans: 'wait' "
        "always, 'skip' never (plans stay pending for a later run), 'auto' when the run "
        "comes from a deployment (scheduled or started through the API/UI), not for "
        "ad-hoc runs such as `optiinfra optimize --once`.",
    )
    approval_timeout: Duration = Field(
        default=86400.0,
        description="How long a paused run waits for an answer (24h); no answer by then "
        "counts as rejected.",
    )


class StoreURLs(_Section):
    """Store URLs; ``OPTIINFRA_*_URL`` environment variables take precedence."""

    metrics_url: str | None = Field(
        default=None, description="Time-series store: chdb:///path or clickhouse://host:8123/db."
    )
    state_url: str | None = Field(
        default=None, description="State store: sqlite:///path or postgresql+psycopg://host/db."
    )
    memory_url: str | None = Field(
        default=None, description="Decision memory: qdrant:///path or http(s)://host:6333."
    )

    @model_validator(mode="after")
    def _schemes(self) -> StoreURLs:
        for field in STORE_SCHEMES:
            try:
                _check_store_url(field, getattr(self, field))
            except ValueError as exc:
                raise PydanticCustomError(
                    "store_url", "{field}: {problem}", {"field": field, "problem": str(exc)}
                ) from None
        return self


class OptiInfraConfig(_Section):
    """The whole ``providers.yaml``."""

    version: Literal[1] = Field(default=1, description="File format version; only 1 exists.")
    tenants: list[Tenant] = Field(
        default_factory=lambda: [Tenant(name=DEFAULT_TENANT)],
        description="Tenants (customers); `default` is always declared.",
    )
    providers: list[ProviderConfig] = Field(
        default_factory=list, description="Where data comes from."
    )
    slos: list[SLO] = Field(default_factory=list, description="Latency and error targets.")
    policies: list[Policy] = Field(
        default_factory=list, description="What each tenant allows OptiInfra to propose."
    )
    llm: LLMConfig = Field(default_factory=LLMConfig, description="Who writes explanations.")
    optimize: OptimizeSettings = Field(
        default_factory=OptimizeSettings, description="Analysis window and agent thresholds."
    )
    stores: StoreURLs = Field(
        default_factory=StoreURLs, description="Store URLs (OPTIINFRA_*_URL overrides them)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> OptiInfraConfig:
        problems = consistency_problems(self.model_dump(mode="python"))
        if problems:
            text = "; ".join(f"{_dotted(loc)}: {message}" for loc, message in problems)
            raise PydanticCustomError(CONSISTENCY_ERROR, "{problems}", {"problems": text})
        return self

    def enabled_providers(self) -> list[ProviderConfig]:
        return [p for p in self.providers if p.enabled]

    def provider(self, name: str) -> ProviderConfig:
        for p in self.providers:
            if p.name == name:
                return p
        raise KeyError(name)

    def tenant_names(self) -> list[str]:
        """Declared tenants, ``default`` first (it always exists)."""
        names = [t.name for t in self.tenants]
        return names if DEFAULT_TENANT in names else [DEFAULT_TENANT, *names]


Loc = tuple[str | int, ...]
#: The model behind each list or mapping section of the file (for "did you mean").
SECTION_MODELS: dict[str, type[BaseModel]] = {
    "tenants": Tenant,
    "providers": ProviderConfig,
    "slos": SLO,
    "policies": Policy,
    "llm": LLMConfig,
    "stores": StoreURLs,
}


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _items(data: Mapping[str, Any], section: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    items = data.get(section)
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, Mapping):
                yield index, item


def consistency_problems(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Cross-section problems in plain config data, each at the place to fix.

    Works on unvalidated data (values of the wrong type are skipped: field validation
    reports those), so one pass finds these problems alongside every field error.
    Duplicates are reported at the second occurrence.
    """
    problems: list[tuple[Loc, str]] = []

    def name_of(item: Mapping[str, Any]) -> str | None:
        name = item.get("name")
        return name if isinstance(name, str) else None

    def tenant_of(item: Mapping[str, Any]) -> str | None:
        tenant = item.get("tenant", DEFAULT_TENANT)
        return tenant if isinstance(tenant, str) else None

    def slo_key(item: Mapping[str, Any]) -> str | None:
        tenant, deployment = tenant_of(item), item.get("deployment", "*")
        if tenant is None or not isinstance(deployment, str):
            return None
        return f"SLO for tenant {tenant!r}, deployment {deployment!r}"

    duplicate_checks: list[tuple[str, Callable[[Mapping[str, Any]], str | None], str | None]] = [
        ("tenants", lambda t: (n := name_of(t)) and f"tenant name {n!r}", "name"),
        ("providers", lambda p: (n := name_of(p)) and f"provider name {n!r}", "name"),
        ("slos", slo_key, None),
        ("policies", lambda p: (t := tenant_of(p)) and f"policy for tenant {t!r}", None),
    ]
    for section, describe, field in duplicate_checks:
        seen: dict[str, int] = {}
        for index, item in _items(data, section):
            what = describe(item)
            if not what:
                continue
            if what in seen:
                loc: Loc = (section, index, field) if field else (section, index)
                first = f"{section}[{seen[what]}]"
                problems.append((loc, f"duplicate {what} (first declared at {first})"))
            else:
                seen[what] = index

    problems.extend(_quality_problems(data))
    declared = {DEFAULT_TENANT} | {n for _, t in _items(data, "tenants") if (n := name_of(t))}
    for section in ("providers", "slos", "policies"):
        for index, item in _items(data, section):
            tenant = item.get("tenant")
            if isinstance(tenant, str) and tenant not in declared:
                known = ", ".join(sorted(declared))
                problems.append(
                    (
                        (section, index, "tenant"),
                        f"tenant {tenant!r} is not declared under tenants: (declared: {known})",
                    )
                )
    return problems


def _quality_problems(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """A ``quality:`` section only on (and always on) a provider of kind quality, and every
    credential it names declared under that provider's ``credentials:``."""
    problems: list[tuple[Loc, str]] = []
    for index, item in _items(data, "providers"):
        kind = item.get("kind")
        is_quality = isinstance(kind, str) and kind.lower() == QUALITY_KIND
        section = item.get("quality")
        if section is not None and not is_quality:
            problems.append(
                (("providers", index, "quality"), "only a provider of kind quality reads quality:")
            )
            continue
        if not is_quality:
            continue
        if section is None:
            message = "a provider of kind quality needs a quality: section (docs/quality.md)"
            problems.append((("providers", index, "quality"), message))
            continue
        if item.get("options"):
            message = "a quality provider takes its settings under quality:, not options:"
            problems.append((("providers", index, "options"), message))
        if not isinstance(section, Mapping):
            continue
        credentials = item.get("credentials")
        declared = set(credentials) if isinstance(credentials, Mapping) else set()
        places: list[tuple[Loc, Any]] = []
        targets = section.get("targets")
        for t_index, target in enumerate(targets if isinstance(targets, list) else []):
            if isinstance(target, Mapping):
                places.append((("targets", t_index, "credential"), target.get("credential")))
        for part in ("judge", "interactions"):
            sub = section.get(part)
            if isinstance(sub, Mapping):
                places.append(((part, "credential"), sub.get("credential")))
        for where, name in places:
            if isinstance(name, str) and name and name not in declared:
                known = ", ".join(sorted(str(c) for c in declared)) or "none"
                problems.append(
                    (
                        ("providers", index, "quality", *where),
                        f"credential {name!r} is not declared under this provider's "
                        f"credentials: (declared: {known})",
                    )
                )
    return problems
