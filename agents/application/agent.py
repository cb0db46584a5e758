"""The application agent: answer quality. It assesses every other agent's proposal
for its quality risk, against the deployment's measured quality margin.

* A change that leaves the model's numerics alone (GPU type, replicas, market, batch
  limits) is OK.
* A change that does not (quantization, an FP8 KV cache) is weighed against the
  margin between the current configuration's pessimistic quality (the lower
  confidence bound of its F1 on golden-set probes) and the tenant's floor
  (``1 − max_quality_drop`` of the best known configuration):
  **block** when the margin is breached, thin, or smaller than the change's expected
  drop; **concern** when the margin is unknown (too few probes: never "fine" for lack
  of data); OK otherwise.
"""

from __future__ import annotations

from typing import Any

from agents.application.graph import build_graph
from agents.application.nodes import METRIC, baseline_frame
from agents.application.risk import quality_risk
from agents.application.stats import quality_margin
from agents.common.agent import Agent, AgentDeps
from agents.common.proposals import Assessment, Delta, Proposal, Verdict
from agents.context import FleetContext
from agents.registry import register_agent


@register_agent
class ApplicationAgent(Agent):
    name = "application"
    #: Quality is the customer's constraint: its blocks are final whatever the order.
    authority = 3

    def build_graph(self) -> Any:
        return build_graph()

    def assess(
        self, proposal: Proposal, context: FleetContext, deps: AgentDeps | None = None
    ) -> Assessment | None:
        risk = quality_risk(proposal.change)
        if risk is None:
            return self._verdict(proposal, Verdict.OK, "does not change the model's numerics")
        policy = context.policy(proposal.tenant)
        drop = {
            "quality_relative": Delta(
                value=-risk.expected_drop, unit="ratio", basis=f"typical for {risk.what}"
            )
        }
        key = ("quality_baselines",)
        if key not in context.memo:
            context.memo[key] = baseline_frame(context.quality)
        frame = context.memo[key]
        current = self._current_config(context, proposal)
        if frame.empty or current is None:
            return self._verdict(
                proposal,
                Verdict.CONCERN,
                f"{risk.what} is expected to cost "
                f"about {risk.expected_drop:.0%} of answer quality, and "
                f"{proposal.target} has no quality probes to check its margin",
                drop,
            )
        margin = quality_margin(
            frame,
            proposal.target,
            current,
            tenant=proposal.tenant,
            metric=METRIC,
            max_quality_drop=policy.max_quality_drop,
        )
        head = f"{risk.what} (typically −{risk.expected_drop:.0%} quality)"
        if margin.status == "unknown":
            return self._verdict(
                proposal, Verdict.CONCERN, f"{head}: quality margin unknown ({margin.reason})", drop
            )
        if margin.status in ("breached", "thin") or margin.relative_margin < risk.expected_drop:
            return self._verdict(
                proposal,
                Verdict.BLOCK,
                f"{head}: the quality margin is {margin.status} — {margin.reason}; the "
                f"tenant allows a {policy.max_quality_drop:.0%} drop",
                drop,
            )
        return self._verdict(proposal, Verdict.OK, f"{head}: margin {margin.reason}", drop)

    @staticmethod
    def _current_config(context: FleetContext, proposal: Proposal) -> str | None:
        """The configuration the target runs now: that of its latest quality event."""
        quality = context.quality
        if quality.empty:
            return None
        rows = quality[
            (quality["deployment"] == proposal.target) & (quality["tenant"] == proposal.tenant)
        ]
        if rows.empty:
            return None
        return str(rows.sort_values("ts")["config_id"].iloc[-1])
