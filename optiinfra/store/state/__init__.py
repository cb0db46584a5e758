"""The state store (SQLModel over SQLite by default, PostgreSQL by URL).

Schema: ``sql/state/*.sql``, applied by :mod:`.migrate` on open. Tables:
:mod:`.tables`. See ``docs/state-and-memory.md``.
"""

from optiinfra.store.state.cursors import Cursor, load_cursors, prune_cursors, save_cursors
from optiinfra.store.state.store import StateStore, open_state
from optiinfra.store.state.tables import (
    STATE_METADATA,
    STATE_TABLES,
    Approval,
    ApprovalDecision,
    AuditEvent,
    CollectionRun,
    CollectionStatus,
    Outcome,
    Plan,
    PlanRecommendation,
    PlanStatus,
    Provider,
    Recommendation,
    RecommendationStatus,
    Risk,
    Rollout,
    RolloutState,
    RolloutStep,
    ScrapeCursor,
    StepState,
    Tenant,
    Verdict,
)

__all__ = [
    "STATE_METADATA",
    "STATE_TABLES",
    "Approval",
    "ApprovalDecision",
    "AuditEvent",
    "CollectionRun",
    "CollectionStatus",
    "Cursor",
    "Outcome",
    "Plan",
    "PlanRecommendation",
    "PlanStatus",
    "Provider",
    "Recommendation",
    "RecommendationStatus",
    "Risk",
    "Rollout",
    "RolloutState",
    "RolloutStep",
    "ScrapeCursor",
    "StateStore",
    "StepState",
    "Tenant",
    "Verdict",
    "load_cursors",
    "open_state",
    "prune_cursors",
    "save_cursors",
]
