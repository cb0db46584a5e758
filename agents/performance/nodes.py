"""The performance agent's own nodes."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig

from agents.common.capacity import ReplicaCapacityEstimator
from agents.common.nodes import deps_of
from agents.common.state import AgentState
from agents.performance.bottlenecks import find_bottlenecks
from agents.performance.tuning import tuning_proposals


def load_context(state: AgentState) -> dict[str, Any]:
    """Note deployments with inventory but no serving metrics (nothing to analyse)."""
    notes = [
        f"{d['provider']}/{d['deployment']}: no serving metrics in the window"
        for d, stats in state.context.deployment_rows()
        if stats is None
    ]
    return {"notes": state.notes + notes} if notes else {}


def detect(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
    deps = deps_of(config)
    capacity = ReplicaCapacityEstimator(deps.capacity_model(), state.context)
    proposals, notes = [], list(state.notes)
    for deployment, stats in state.context.deployment_rows():
        if stats is None:
            continue
        targets = capacity.targets(deployment)
        found = find_bottlenecks(deployment, stats, targets)
        for bottleneck in found:
            if bottleneck.kind == "low_occupancy":
                notes.append(
                    f"{deployment['provider']}/{deployment['deployment']}: {bottleneck.summary}"
                )
        actionable = [b for b in found if b.kind != "low_occupancy"]
        if actionable:
            made, said = tuning_proposals(deployment, stats, actionable, capacity)
            proposals.extend(made)
            notes.extend(said)
    return {"proposals": proposals, "notes": notes}
