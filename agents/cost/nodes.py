"""The cost agent's own nodes: load its slice of the context, run its detectors."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig

from agents.common.nodes import deps_of
from agents.common.state import AgentState
from agents.cost.detectors.fleet_allocation import (
    DeploymentCandidates,
    fleet_allocation_notes,
)
from agents.cost.detectors.idle import detect_idle
from agents.cost.detectors.reserved import detect_reserved
from agents.cost.detectors.rightsize import ReplicaCapacityEstimator, detect_right_size
from agents.cost.detectors.spot import detect_spot
from agents.cost.thresholds import CostThresholds


def thresholds_of(config: RunnableConfig | None) -> CostThresholds:
    deps = deps_of(config)
    value = deps.extra.get("cost_thresholds")
    return value if isinstance(value, CostThresholds) else CostThresholds()


def load_context(state: AgentState) -> dict[str, Any]:
    """Say which deployments lack a price: every saving is computed from one."""
    missing = state.context.deployments[state.context.deployments["usd_per_hour"].isna()]
    notes = [
        f"{r.provider}/{r.deployment}: no price per hour in the inventory"
        for r in missing.itertuples()
    ]
    return {"notes": state.notes + notes} if notes else {}


def detect(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
    thresholds = thresholds_of(config)
    deps = deps_of(config)
    context = state.context
    capacity = ReplicaCapacityEstimator(deps.capacity_model(), context)
    proposals, notes = [], list(state.notes)
    candidates: list[DeploymentCandidates] = []
    for found, said in (
        detect_idle(context, thresholds),
        detect_right_size(context, thresholds, capacity, candidates),
        detect_spot(context, thresholds, capacity.current_replica_rps),
        detect_reserved(context, thresholds),
    ):
        proposals.extend(found)
        notes.extend(said)
    notes.extend(fleet_allocation_notes(candidates))
    return {"proposals": proposals, "notes": notes}
