"""The state every agent graph carries (agents extend it only when they must)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.common.proposals import Proposal
from agents.context import FleetContext


@dataclass
class AgentState:
    """Input: the fleet context. Each node returns only the fields it changed."""

    context: FleetContext
    #: Proposals from the detectors, then enriched by recall and explain.
    proposals: list[Proposal] = field(default_factory=list)
    #: Human-readable notes (skipped deployments, missing data), for the artifact.
    notes: list[str] = field(default_factory=list)
