"""Outcomes in the decision memory: remember what a decision realised, recall similar ones.

A rollout (or its rollback) calls :func:`remember_outcome` with the features the
proposal carried (``evidence["decision_features"]``) and what actually happened; the
next optimize run calls :func:`recall_similar` for each new proposal.

Example::

    features = DecisionFeatures(**recommendation.evidence["decision_features"])
    remember_outcome(memory, features, OutcomeRecord(
        plan_id=plan.id, recommendation_id=rec.id, kind=rec.kind, target=rec.target,
        saving_usd_per_month=0.0, quality_relative=-0.14, rolled_back=True,
        reason="quality dropped 14% at the 10% step", first_step_percent=10))
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agents.memory.features import DecisionFeatures, decision_vector
from optiinfra.store.memory import DecisionMemory, DecisionRecord

#: Below this cosine similarity a past decision is not "similar": with the weights of
#: :mod:`.features`, 0.85 means the same kind of change and two thirds of the context
#: alike (another kind scores at most ≈ 0.46).
MIN_SIMILARITY = 0.85


class OutcomeRecord(BaseModel):
    """What one rolled-out (or rolled-back) recommendation realised.

    Signs: ``saving_usd_per_month`` positive = cheaper (as a proposal's monthly saving);
    latency and quality changes are relative to the baseline (``ttft_relative=0.1``:
    10% slower; ``quality_relative=-0.12``: 12% worse). ``None`` = not measured.
    """

    plan_id: str = Field(min_length=1)
    recommendation_id: str = ""
    kind: str = Field(min_length=1)
    target: str = ""
    saving_usd_per_month: float | None = None
    ttft_relative: float | None = None
    itl_relative: float | None = None
    quality_relative: float | None = None
    rolled_back: bool = False
    reason: str = ""
    first_step_percent: float = Field(default=10.0, gt=0, le=100)
    finished_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def record_id(self) -> str:
        """One memory per plan and recommendation: remembering again replaces it."""
        return f"outcome:{self.plan_id}:{self.recommendation_id}"


class RecalledOutcome(BaseModel):
    """A similar past decision: its features, its outcome, and how similar it is."""

    similarity: float
    record_id: str
    features: DecisionFeatures
    outcome: OutcomeRecord

    def summary(self) -> dict[str, Any]:
        """A short dict for evidence and the approval form."""
        o = self.outcome
        return {
            "similarity": round(self.similarity, 3),
            "plan_id": o.plan_id,
            "kind": o.kind,
            "target": o.target,
            "rolled_back": o.rolled_back,
            "reason": o.reason,
            "first_step_percent": o.first_step_percent,
            "expected_saving_usd_per_month": _round(self.features.expected_saving_usd_per_month),
            "realised_saving_usd_per_month": _round(o.saving_usd_per_month),
            "ttft_relative": _round(o.ttft_relative, 3),
            "quality_relative": _round(o.quality_relative, 3),
            "finished_at": o.finished_at.isoformat(),
        }


def remember_outcome(
    memory: DecisionMemory, features: DecisionFeatures, outcome: OutcomeRecord
) -> None:
    """Store (or replace) the outcome of one decision under its context vector."""
    if features.kind != outcome.kind:
        raise ValueError(
            f"outcome of plan {outcome.plan_id}: kind {outcome.kind!r} does not match the "
            f"decision features' kind {features.kind!r}"
        )
    vector = decision_vector(features)
    if len(vector) != memory.vector_size:
        raise ValueError(
            f"decision vectors have {len(vector)} values; {memory!r} holds {memory.vector_size}"
        )
    memory.upsert(
        [
            DecisionRecord(
                id=outcome.record_id,
                vector=vector,
                kind=features.kind,
                tenant=features.tenant,
                provider=features.provider,
                payload={
                    "features": features.model_dump(mode="json"),
                    "outcome": outcome.model_dump(mode="json"),
                },
            )
        ]
    )


def recall_similar(
    memory: DecisionMemory,
    features: DecisionFeatures,
    k: int = 5,
    min_similarity: float = MIN_SIMILARITY,
) -> list[RecalledOutcome]:
    """The ``k`` nearest past outcomes at least ``min_similarity`` alike, nearest first.

    The search is not filtered by kind: the kind block dominates the vector, so the
    nearest decisions are of the same kind whenever any exist, and an unfiltered search
    is the fast one in Qdrant local mode (a payload filter is evaluated in Python).
    Records that are not outcomes (other writers of the collection) are skipped.
    """
    found: list[RecalledOutcome] = []
    for hit in memory.search(decision_vector(features), limit=k):
        if hit.score < min_similarity:
            continue
        payload = hit.record.payload
        try:
            found.append(
                RecalledOutcome(
                    similarity=hit.score,
                    record_id=hit.id,
                    features=DecisionFeatures.model_validate(payload.get("features") or {}),
                    outcome=OutcomeRecord.model_validate(payload.get("outcome") or {}),
                )
            )
        except ValidationError:
            continue
    return found


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
