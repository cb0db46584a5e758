"""The performance agent: finds bottlenecks, proposes engine tuning, and checks every
cost change against the latency targets before anyone is asked to approve it."""

from __future__ import annotations

import math
from typing import Any

from agents.common.agent import Agent, AgentDeps
from agents.common.capacity import ReplicaCapacityEstimator
from agents.common.proposals import Assessment, Delta, Proposal, Verdict
from agents.context import FleetContext
from agents.performance.graph import build_graph
from agents.registry import register_agent
from optiinfra.errors import OptiInfraError


@register_agent
class PerformanceAgent(Agent):
    name = "performance"
    authority = 2

    def build_graph(self) -> Any:
        return build_graph()

    def assess(
        self, proposal: Proposal, context: FleetContext, deps: AgentDeps | None = None
    ) -> Assessment | None:
        deps = deps or AgentDeps()
        if proposal.kind == "idle_shutdown":
            return self._verdict(proposal, Verdict.OK, "no traffic to serve")
        if proposal.kind == "spot_migration":
            if proposal.evidence.get("on_demand_floor_carries_load") is False:
                return self._verdict(
                    proposal,
                    Verdict.CONCERN,
                    "if every spot replica is "
                    "interrupted, the on-demand floor cannot carry the load",
                )
            return self._verdict(
                proposal,
                Verdict.OK,
                "the on-demand floor carries the load "
                "during an interruption, or the load is unknown",
            )
        if proposal.kind in ("right_size", "consolidation"):
            return self._assess_hardware(proposal, context, deps)
        return None

    def _assess_hardware(
        self, proposal: Proposal, context: FleetContext, deps: AgentDeps
    ) -> Assessment:
        row = next(
            (
                (d, s)
                for d, s in context.deployment_rows()
                if d["tenant"] == proposal.tenant
                and d["provider"] == proposal.provider
                and d["deployment"] == proposal.target
            ),
            None,
        )
        if row is None or row[1] is None:
            return self._verdict(
                proposal, Verdict.CONCERN, "no serving metrics to check the change against"
            )
        deployment, stats = row
        capacity = ReplicaCapacityEstimator(deps.capacity_model(), context)
        change = proposal.change
        workload = capacity.workload(stats)
        replicas = int(change.get("replicas") or deployment["replicas"])
        if workload is None or replicas < 1:
            return self._verdict(proposal, Verdict.CONCERN, "no token counts to predict with")
        gpu_count = int(change.get("gpu_count") or deployment["gpu_count"] or 1)
        try:
            cfg = capacity.config(
                deployment,
                gpu=change.get("gpu"),
                gpu_count=gpu_count,
                engine_args=change.get("engine_args") or {},
            )
            model = capacity.calibrated(deployment, stats)
            rate = float(stats["request_rate"]) / replicas
            predicted = model.predict(cfg, workload, rate)
        except (OptiInfraError, TypeError, ValueError) as exc:
            return self._verdict(proposal, Verdict.CONCERN, f"cannot predict the change: {exc}")
        targets = capacity.targets(deployment)
        deltas = {
            "ttft_p95_s": Delta(
                value=predicted.ttft_p95_s.value,
                unit="s",
                low=predicted.ttft_p95_s.low,
                high=predicted.ttft_p95_s.high,
            ),
            "itl_p95_s": Delta(
                value=predicted.itl_p95_s.value,
                unit="s",
                low=predicted.itl_p95_s.low,
                high=predicted.itl_p95_s.high,
            ),
        }
        if predicted.saturated:
            return self._verdict(
                proposal,
                Verdict.BLOCK if len(targets.assumed) < 2 else Verdict.CONCERN,
                f"predicted to saturate: {predicted.reason}",
                deltas,
            )
        broken, close = [], []
        breaks_configured = False
        for name, label, estimate, target in (
            ("ttft_p95_s", "p95 TTFT", predicted.ttft_p95_s, targets.ttft_p95_s),
            ("itl_p95_s", "p95 inter-token latency", predicted.itl_p95_s, targets.itl_p95_s),
        ):
            if target is None:
                continue
            if estimate.value > target:
                kind = "assumed" if name in targets.assumed else "configured"
                breaks_configured |= kind == "configured"
                broken.append(f"{label} {estimate.value:.3f} s > {kind} target {target:.3f} s")
            elif not math.isfinite(estimate.high) or estimate.high > target:
                worst = (
                    "saturates" if not math.isfinite(estimate.high)
                    else f"up to {estimate.high:.3f} s"
                )  # fmt: skip
                close.append(f"{label} {worst} at the pessimistic end against {target:.3f} s")
        source = ", ".join(targets.sources)
        if broken:
            # A configured SLO is the customer's constraint: it blocks. An assumed
            # default only raises a concern for the reviewer.
            verdict = Verdict.BLOCK if breaks_configured else Verdict.CONCERN
            return self._verdict(
                proposal, verdict, f"breaks the SLO ({source}): " + "; ".join(broken), deltas
            )
        if close:
            return self._verdict(
                proposal,
                Verdict.CONCERN,
                f"within the SLO ({source}) at the central estimate only: " + "; ".join(close),
                deltas,
            )
        return self._verdict(proposal, Verdict.OK, f"predicted within the SLO ({source})", deltas)
