"""The state store's tables (SQLModel), as DESIGN.md's "Core records" describe them.

The SQL that creates them lives in ``sql/state/*.sql`` (see :mod:`.migrate`); these
classes are how Python reads and writes the rows. A test migrates a fresh database on
SQLite and on PostgreSQL and compares the result with :data:`STATE_METADATA`, so the
migrations and these classes cannot drift apart.

Conventions: ids are text (uuid4 hex; tenants and providers use their configured
name), timestamps are timezone-aware UTC (:class:`.types.UTCDateTime`), machine-readable
payloads are JSON columns, statuses are text whose allowed values are the ``StrEnum`` s
below (checked when a row is written). JSON columns are not mutation-tracked: assign a
new dict/list rather than editing one in place.

Table models skip pydantic validation on construction (a SQLModel rule); the checks
that matter are done by the column types on write and by :class:`~.store.StateStore`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Text, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from optiinfra.store.state.types import JSONType, TextEnum, UTCDateTime, new_id, utcnow


class StateTable(SQLModel, registry=registry()):
    """Base of the state tables: their own metadata, apart from any other SQLModel."""


#: The metadata the migrations must produce (checked by tests on both backends).
STATE_METADATA = StateTable.metadata


# ---------------------------------------------------------------- statuses


class RecommendationStatus(StrEnum):
    PROPOSED = "proposed"
    PLANNED = "planned"
    SUPERSEDED = "superseded"
    DISCARDED = "discarded"


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class PlanStatus(StrEnum):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    ROLLING_OUT = "rolling_out"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    #: Still pending when a later optimize run proposed something else for its target.
    SUPERSEDED = "superseded"


class ApprovalDecision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    #: No answer before the pause timed out: treated as a rejection.
    EXPIRED = "expired"


class RolloutState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


class StepState(StrEnum):
    PENDING = "pending"
    APPLYING = "applying"
    BAKING = "baking"
    CHECKING = "checking"
    PASSED = "passed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class CollectionStatus(StrEnum):
    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"


def _ts(*, nullable: bool = False, default: bool = True, onupdate: bool = False) -> Any:
    """A UTC timestamp field."""
    kwargs: dict[str, Any] = {"sa_type": UTCDateTime, "nullable": nullable}
    if onupdate:
        kwargs["sa_column_kwargs"] = {"onupdate": utcnow}
    if default:
        return Field(default_factory=utcnow, **kwargs)
    return Field(default=None, **kwargs)


def _json(factory: type = dict) -> Any:
    return Field(default_factory=factory, sa_type=JSONType, nullable=False)


def _enum(enum_type: type[StrEnum], default: StrEnum | None, *, nullable: bool = False) -> Any:
    return Field(default=default, sa_type=TextEnum(enum_type), nullable=nullable)


def _text(*, nullable: bool = False, default: str | None = "") -> Any:
    return Field(default=default, sa_type=Text, nullable=nullable)


# ---------------------------------------------------------------- tables


class Tenant(StateTable, table=True):
    """A customer whose fleet is looked after; ``id`` is the configured name."""

    __tablename__ = "tenants"

    id: str = Field(primary_key=True, sa_type=Text)
    display_name: str = _text()
    budget_usd_per_month: float | None = Field(default=None, nullable=True)
    labels: dict[str, str] = _json()
    #: Set when the tenant disappeared from providers.yaml (rows are never deleted).
    removed_at: datetime | None = _ts(nullable=True, default=False)
    created_at: datetime = _ts()
    updated_at: datetime = _ts(onupdate=True)


class Provider(StateTable, table=True):
    """A configured provider; ``id`` is its name in providers.yaml (unique)."""

    __tablename__ = "providers"

    id: str = Field(primary_key=True, sa_type=Text)
    tenant: str = Field(foreign_key="tenants.id", sa_type=Text, index=True)
    kind: str = _text()
    region: str = _text()
    enabled: bool = Field(default=True, nullable=False)
    #: The non-secret configuration (URLs, intervals, labels, credential *variable names*).
    config: dict[str, Any] = _json()
    #: Set when the provider disappeared from providers.yaml (it is then disabled).
    removed_at: datetime | None = _ts(nullable=True, default=False)
    created_at: datetime = _ts()
    updated_at: datetime = _ts(onupdate=True)


class Recommendation(StateTable, table=True):
    """One agent's machine-readable proposal; numbers come from code, never the LLM."""

    __tablename__ = "recommendations"

    id: str = Field(default_factory=new_id, primary_key=True, sa_type=Text)
    tenant: str = Field(foreign_key="tenants.id", sa_type=Text, index=True)
    provider: str | None = _text(nullable=True, default=None)
    agent: str = _text()
    kind: str = _text()
    target: str = _text()
    #: The exact change, e.g. {"engine_args": {"max_num_seqs": 256}}.
    change: dict[str, Any] = _json()
    #: Expected deltas with units, e.g. {"cost_usd_per_hour": {"value": -1.2, "unit": "USD/h"}}.
    expected_deltas: dict[str, Any] = _json()
    confidence: float = Field(default=0.0, nullable=False)
    risk: Risk = _enum(Risk, Risk.MEDIUM)
    evidence: dict[str, Any] = _json()
    narrative: str = _text()
    status: RecommendationStatus = _enum(RecommendationStatus, RecommendationStatus.PROPOSED)
    created_at: datetime = _ts()
    updated_at: datetime = _ts(onupdate=True)


class Plan(StateTable, table=True):
    """What the coordinator asks a person to approve: ranked, assessed recommendations."""

    __tablename__ = "plans"

    id: str = Field(default_factory=new_id, primary_key=True, sa_type=Text)
    tenant: str = Field(foreign_key="tenants.id", sa_type=Text, index=True)
    rank: int = Field(default=0, nullable=False)
    #: Other agents' assessments: [{"agent", "verdict", "predicted_deltas", "reason"}].
    assessments: list[dict[str, Any]] = _json(list)
    #: Net expected deltas of the whole plan, with units.
    expected_deltas: dict[str, Any] = _json()
    summary: str = _text()
    status: PlanStatus = _enum(PlanStatus, PlanStatus.DRAFT)
    #: The Prefect flow run that waits for this plan's approval, when there is one.
    flow_run_id: str | None = _text(nullable=True, default=None)
    created_at: datetime = _ts()
    updated_at: datetime = _ts(onupdate=True)


class PlanRecommendation(StateTable, table=True):
    """Which recommendations a plan carries, in order."""

    __tablename__ = "plan_recommendations"

    plan_id: str = Field(foreign_key="plans.id", primary_key=True, sa_type=Text, ondelete="CASCADE")
    recommendation_id: str = Field(
        foreign_key="recommendations.id", primary_key=True, sa_type=Text, index=True
    )
    position: int = Field(default=0, nullable=False)


class Approval(StateTable, table=True):
    """A person's decision on a plan; nothing is applied without one."""

    __tablename__ = "approvals"

    id: str = Field(default_factory=new_id, primary_key=True, sa_type=Text)
    plan_id: str = Field(foreign_key="plans.id", sa_type=Text, index=True)
    tenant: str = Field(foreign_key="tenants.id", sa_type=Text)
    decision: ApprovalDecision = _enum(ApprovalDecision, None)
    reviewer: str = _text()
    comment: str = _text()
    #: Limits the reviewer set, e.g. {"max_percent": 50, "not_before": "..."}.
    limits: dict[str, Any] = _json()
    decided_at: datetime = _ts()
    created_at: datetime = _ts()


class Rollout(StateTable, table=True):
    """The gradual application of an approved plan."""

    __tablename__ = "rollouts"

    id: str = Field(default_factory=new_id, primary_key=True, sa_type=Text)
    plan_id: str = Field(foreign_key="plans.id", sa_type=Text, index=True)
    tenant: str = Field(foreign_key="tenants.id", sa_type=Text)
    state: RolloutState = _enum(RolloutState, RolloutState.PENDING)
    #: The step percentages, e.g. [10, 50, 100].
    steps_percent: list[int] = _json(list)
    current_step: int = Field(default=0, nullable=False)
    verdict: Verdict | None = _enum(Verdict, None, nullable=True)
    reason: str = _text()
    started_at: datetime | None = _ts(nullable=True, default=False)
    finished_at: datetime | None = _ts(nullable=True, default=False)
    created_at: datetime = _ts()
    updated_at: datetime = _ts(onupdate=True)
    #: What is applied where: {"target": {...}, "change": {...}, "provider": "..."}.
    spec: dict[str, Any] = _json()
    #: The actuator's snapshot before the first step (``Baseline`` as JSON): all a new
    #: process needs to revert this rollout.
    baseline: dict[str, Any] = _json()
    #: The Prefect flow run driving it, and ``host:pid`` of its process (for recovery).
    flow_run_id: str | None = _text(nullable=True, default=None)
    owner: str = _text()


class RolloutStep(StateTable, table=True):
    """One step of a rollout (a percentage of the target) and its canary verdict."""

    __tablename__ = "rollout_steps"
    __table_args__ = (UniqueConstraint("rollout_id", "position", name="uq_rollout_steps_position"),)

    id: str = Field(default_factory=new_id, primary_key=True, sa_type=Text)
    rollout_id: str = Field(foreign_key="rollouts.id", sa_type=Text, index=True, ondelete="CASCADE")
    position: int = Field(nullable=False)
    percent: int = Field(nullable=False)
    state: StepState = _enum(StepState, StepState.PENDING)
    verdict: Verdict | None = _enum(Verdict, None, nullable=True)
    reason: str = _text()
    #: Canary vs baseline figures the verdict was drawn from.
    metrics: dict[str, Any] = _json()
    started_at: datetime | None = _ts(nullable=True, default=False)
    checked_at: datetime | None = _ts(nullable=True, default=False)
    created_at: datetime = _ts()
    updated_at: datetime = _ts(onupdate=True)


class Outcome(StateTable, table=True):
    """What a plan actually did: realised deltas, rolled back or not, its context vector."""

    __tablename__ = "outcomes"

    id: str = Field(default_factory=new_id, primary_key=True, sa_type=Text)
    plan_id: str = Field(foreign_key="plans.id", sa_type=Text, index=True)
    rollout_id: str | None = Field(
        default=None, foreign_key="rollouts.id", sa_type=Text, nullable=True
    )
    tenant: str = Field(foreign_key="tenants.id", sa_type=Text)
    realised_deltas: dict[str, Any] = _json()
    rolled_back: bool = Field(default=False, nullable=False)
    context_vector: list[float] = _json(list)
    #: The point id of this outcome in the decision memory, once remembered.
    memory_id: str | None = _text(nullable=True, default=None)
    notes: str = _text()
    created_at: datetime = _ts()
    updated_at: datetime = _ts(onupdate=True)


class AuditEvent(StateTable, table=True):
    """Who did what to what, and when (append-only; no foreign keys so it never refuses)."""

    __tablename__ = "audit_events"

    id: str = Field(default_factory=new_id, primary_key=True, sa_type=Text)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
    tenant: str = Field(default="default", sa_type=Text)
    actor: str = _text()
    action: str = _text()
    subject: str = _text()
    detail: dict[str, Any] = _json()


class CollectionRun(StateTable, table=True):
    """One provider's part of one collection run (what ``optiinfra status`` lists)."""

    __tablename__ = "collection_runs"
    __table_args__ = (
        UniqueConstraint("run_id", "provider", name="uq_collection_runs_run_provider"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, sa_type=Text)
    run_id: str = Field(sa_type=Text, index=True)
    provider: str = Field(sa_type=Text)
    tenant: str = Field(default="default", sa_type=Text)
    started_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    finished_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    status: CollectionStatus = _enum(CollectionStatus, CollectionStatus.OK)
    samples: int = Field(default=0, nullable=False)
    #: Filled from the timestamps when left unset.
    duration_seconds: float | None = Field(default=None, nullable=False)
    #: One-line error text; never credentials.
    error: str | None = _text(nullable=True, default=None)
    created_at: datetime = _ts()


class ScrapeCursor(StateTable, table=True):
    """The last cumulative readings of one direct-scrape target (see ``.cursors``).

    Lets the next collection compute counter rates and histogram quantiles over
    (``scraped_at``, now] from one scrape. ``payload`` holds only the cumulative values
    the metric mappings need, summed over labels the collector does not keep.
    """

    __tablename__ = "scrape_cursors"

    provider: str = Field(primary_key=True, sa_type=Text)
    target: str = Field(primary_key=True, sa_type=Text)
    scraped_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    payload: dict[str, Any] = _json()
    updated_at: datetime = _ts(onupdate=True)


#: Every state table, in creation order (``row_counts`` reports them in this order).
STATE_TABLES: tuple[str, ...] = (
    "tenants",
    "providers",
    "recommendations",
    "plans",
    "plan_recommendations",
    "approvals",
    "rollouts",
    "rollout_steps",
    "outcomes",
    "audit_events",
    "collection_runs",
    "scrape_cursors",
)
