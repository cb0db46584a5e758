"""What agents emit and what they say about each other's proposals.

A :class:`Proposal` is DESIGN.md's ``Recommendation`` before it is stored: a kind, a
target, the exact machine-readable change, expected deltas with units (each with an
interval), confidence, risk and the evidence the figures came from. Every number in it
is computed by a detector; the narrative may come from an LLM but never adds a figure.

An :class:`Assessment` is one agent's view of another agent's proposal (ok / concern /
block, with its own predicted deltas), which the coordinator weighs.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, computed_field

HOURS_PER_MONTH = 730.0  # 8,760 h / 12: the convention cloud price pages use


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


RISK_ORDER = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2}


class Verdict(StrEnum):
    OK = "ok"
    CONCERN = "concern"
    BLOCK = "block"


class Delta(BaseModel):
    """An expected change of one quantity, with its unit and an interval.

    ``value`` is the central estimate; ``low``/``high`` bound it (equal when exact, as a
    price difference is). Negative cost deltas are savings.
    """

    value: float
    unit: str
    low: float | None = None
    high: float | None = None
    #: How the figure was obtained (e.g. "price table aws us-east-1 spot, lower median").
    basis: str = ""

    def bounds(self) -> tuple[float, float]:
        low = self.value if self.low is None else self.low
        high = self.value if self.high is None else self.high
        return (min(low, high), max(low, high))


class Proposal(BaseModel):
    """One agent's proposed change to one target (a deployment or an instance)."""

    agent: str
    kind: str = Field(description="A policy ChangeKind: spot_migration, right_size, …")
    #: What detector produced it (idle, right_size, spot, reserved, kv_pressure, …).
    detector: str
    tenant: str = "default"
    provider: str | None = None
    target: str = Field(description="Deployment name (or instance id for instance-level changes).")
    title: str
    change: dict[str, Any]
    expected_deltas: dict[str, Delta] = Field(default_factory=dict)
    confidence: float = Field(ge=0, le=1)
    risk: Risk = Risk.MEDIUM
    evidence: dict[str, Any] = Field(default_factory=dict)
    #: Code-written text; the explanation step may replace it with an LLM's wording.
    narrative: str = ""
    explanation_source: str = "template"
    #: Nearest past decisions recalled from memory (ids and realised figures).
    recalled: list[dict[str, Any]] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def key(self) -> str:
        """Stable identity of (tenant, provider, target, kind, change): dedup across runs."""
        body = json.dumps(
            [self.tenant, self.provider, self.target, self.kind, self.change],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def monthly_saving_usd(self) -> float:
        """Central monthly saving (positive = cheaper), from the cost delta if any."""
        delta = self.expected_deltas.get("cost_usd_per_month")
        return -delta.value if delta else 0.0


class Assessment(BaseModel):
    """One agent's verdict on another agent's proposal."""

    agent: str
    proposal_key: str
    verdict: Verdict
    reason: str
    predicted_deltas: dict[str, Delta] = Field(default_factory=dict)
