"""The cost agent: idle shutdown, right-sizing, spot, commitments.

It assesses other agents' proposals for what they cost: a change that adds GPUs (more
replicas, a larger tensor-parallel size) is a concern carrying its monthly cost.
"""

from __future__ import annotations

from typing import Any

from agents.common.agent import Agent, AgentDeps
from agents.common.proposals import HOURS_PER_MONTH, Assessment, Delta, Proposal, Verdict
from agents.context import FleetContext
from agents.cost.graph import build_graph
from agents.registry import register_agent


@register_agent
class CostAgent(Agent):
    name = "cost"
    authority = 1

    def build_graph(self) -> Any:
        return build_graph()

    def assess(
        self, proposal: Proposal, context: FleetContext, deps: AgentDeps | None = None
    ) -> Assessment | None:
        extra = proposal.expected_deltas.get("gpus")
        if extra is None or extra.value <= 0:
            return Assessment(
                agent=self.name,
                proposal_key=proposal.key,
                verdict=Verdict.OK,
                reason="adds no GPUs",
            )
        rows = context.deployments[
            (context.deployments["tenant"] == proposal.tenant)
            & (context.deployments["deployment"] == proposal.target)
        ]
        per_gpu = float((rows["price_per_replica"] / rows["gpu_count"].clip(lower=1)).median())
        monthly = per_gpu * extra.value * HOURS_PER_MONTH
        return Assessment(
            agent=self.name,
            proposal_key=proposal.key,
            verdict=Verdict.CONCERN,
            reason=f"adds {extra.value:g} GPUs, about ${monthly:,.0f}/month",
            predicted_deltas={"cost_usd_per_month": Delta(value=monthly, unit="USD/month")},
        )
