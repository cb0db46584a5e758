"""The coordinator: every proposal assessed by the other agents, conflicts resolved by
policy, proposals on one target merged, plans ranked.

Policy order (DESIGN.md): customer constraints > performance > cost.

1. **Customer constraints.** A kind the tenant's policy forbids is never planned. An
   assessment that blocks because a configured SLO would break discards the proposal.
2. **Cross-assessment.** Every other agent present gives its verdict (ok / concern /
   block, with predicted deltas). A block discards; a concern raises the risk one step.
3. **Same target.** An idle shutdown supersedes every other change to its target (no
   point tuning what is stopped). When agents of different authority both change one
   target, the higher authority wins if the lower one's change would undo its relief
   (a cost change to the hardware or replicas of a deployment the performance agent
   found under pressure); otherwise they merge into one plan, applied in authority
   order. Two hardware changes (GPU type, market) of one target do not stack: the one
   with the larger saving stays, the other is superseded.
4. **Ranking.** Plans that relieve a performance problem come first (performance >
   cost), then by risk-adjusted monthly value: saving × confidence × a risk factor.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.common.agent import Agent, AgentDeps
from agents.common.proposals import RISK_ORDER, Assessment, Delta, Proposal, Risk, Verdict
from agents.context import FleetContext

RISK_FACTOR = {Risk.LOW: 1.0, Risk.MEDIUM: 0.8, Risk.HIGH: 0.5}

#: Kinds that change a target's hardware (GPU type, market, replicas).
HARDWARE_KINDS = {"right_size", "spot_migration", "idle_shutdown", "consolidation", "autoscaling"}
#: Kinds whose change relieves a performance problem.
RELIEF_KINDS = {"engine_tuning", "quantization", "parallelism"}


@dataclass
class Decision:
    """What happened to one proposal, and why."""

    proposal: Proposal
    status: str  # planned | discarded | superseded
    reason: str = ""
    assessments: list[Assessment] = field(default_factory=list)


@dataclass
class PlanDraft:
    """One plan: the proposals on one target, applied in order, with their assessments."""

    tenant: str
    provider: str | None
    target: str
    proposals: list[Proposal]
    assessments: list[Assessment]
    risk: Risk
    confidence: float
    expected_deltas: dict[str, Delta]
    relieves_performance: bool
    score: float = 0.0
    rank: int = 0

    @property
    def monthly_saving_usd(self) -> float:
        delta = self.expected_deltas.get("cost_usd_per_month")
        return -delta.value if delta else 0.0

    @property
    def title(self) -> str:
        return "; then ".join(p.title for p in self.proposals)


@dataclass
class CoordinatorResult:
    plans: list[PlanDraft]
    decisions: list[Decision]

    def discarded(self) -> list[Decision]:
        return [d for d in self.decisions if d.status != "planned"]


def _bump(risk: Risk) -> Risk:
    order = [Risk.LOW, Risk.MEDIUM, Risk.HIGH]
    return order[min(len(order) - 1, order.index(risk) + 1)]


def _assess_all(
    proposals: Sequence[Proposal], agents: Sequence[Agent], context: FleetContext, deps: AgentDeps
) -> dict[str, list[Assessment]]:
    out: dict[str, list[Assessment]] = defaultdict(list)
    for proposal in proposals:
        for agent in agents:
            if agent.name == proposal.agent:
                continue
            verdict = agent.assess(proposal, context, deps)
            if verdict is not None:
                out[proposal.key].append(verdict)
    return out


def _sum_deltas(proposals: Sequence[Proposal]) -> dict[str, Delta]:
    total: dict[str, Delta] = {}
    for proposal in proposals:
        for name, delta in proposal.expected_deltas.items():
            low, high = delta.bounds()
            if name in total:
                prev = total[name]
                p_low, p_high = prev.bounds()
                total[name] = Delta(
                    value=prev.value + delta.value,
                    unit=prev.unit,
                    low=p_low + low,
                    high=p_high + high,
                    basis="sum of the plan's changes",
                )
            else:
                total[name] = delta.model_copy()
    return total


def coordinate(
    proposals: Sequence[Proposal],
    agents: Sequence[Agent],
    context: FleetContext,
    deps: AgentDeps | None = None,
) -> CoordinatorResult:
    """Turn every agent's proposals into ranked plans and a decision for each proposal."""
    deps = deps or AgentDeps()
    authority = {a.name: a.authority for a in agents}
    decisions: dict[str, Decision] = {}
    live: list[Proposal] = []
    # 1. Customer constraints: forbidden kinds never reach a plan.
    for proposal in proposals:
        policy = context.policy(proposal.tenant)
        if proposal.kind in policy.forbidden_changes:
            decisions[proposal.key] = Decision(
                proposal,
                "discarded",
                f"{proposal.kind} is forbidden by tenant {proposal.tenant!r}'s policy",
            )
        elif proposal.key in decisions:
            continue  # the same change proposed twice: keep the first
        else:
            decisions[proposal.key] = Decision(proposal, "planned")
            live.append(proposal)
    # 2. Cross-assessment.
    assessments = _assess_all(live, agents, context, deps)
    kept: list[Proposal] = []
    for proposal in live:
        found = assessments.get(proposal.key, [])
        decision = decisions[proposal.key]
        decision.assessments = found
        blocks = [a for a in found if a.verdict == Verdict.BLOCK]
        if blocks:
            decision.status = "discarded"
            decision.reason = "; ".join(f"blocked by {a.agent}: {a.reason}" for a in blocks)
            continue
        if any(a.verdict == Verdict.CONCERN for a in found):
            proposal = proposal.model_copy(update={"risk": _bump(proposal.risk)})
            decision.proposal = proposal
        kept.append(proposal)
    # 3. Same target.
    by_target: dict[tuple[str, str | None, str], list[Proposal]] = defaultdict(list)
    for proposal in kept:
        by_target[(proposal.tenant, proposal.provider, proposal.target)].append(proposal)
    plans: list[PlanDraft] = []
    for (tenant, provider, target), group in by_target.items():
        survivors = _resolve_target(group, authority, decisions)
        if not survivors:
            continue
        survivors.sort(key=lambda p: (-authority.get(p.agent, 0), p.kind))
        plan_assessments = [a for p in survivors for a in decisions[p.key].assessments]
        risk = max((p.risk for p in survivors), key=lambda r: RISK_ORDER[r])
        confidence = min(p.confidence for p in survivors)
        deltas = _sum_deltas(survivors)
        plan = PlanDraft(
            tenant=tenant,
            provider=provider,
            target=target,
            proposals=survivors,
            assessments=plan_assessments,
            risk=risk,
            confidence=confidence,
            expected_deltas=deltas,
            relieves_performance=any(p.kind in RELIEF_KINDS for p in survivors),
        )
        plan.score = plan.monthly_saving_usd * confidence * RISK_FACTOR[risk]
        plans.append(plan)
    # 4. Ranking.
    plans.sort(key=lambda p: (not p.relieves_performance, -p.score, p.target))
    for rank, plan in enumerate(plans, start=1):
        plan.rank = rank
    return CoordinatorResult(plans=plans, decisions=list(decisions.values()))


def _resolve_target(
    group: list[Proposal], authority: dict[str, int], decisions: dict[str, Decision]
) -> list[Proposal]:
    def supersede(p: Proposal, reason: str) -> None:
        decisions[p.key].status = "superseded"
        decisions[p.key].reason = reason

    idle = [p for p in group if p.kind == "idle_shutdown"]
    if idle:
        for p in group:
            if p is not idle[0]:
                supersede(p, f"{p.target} is proposed for shutdown ({idle[0].title})")
        return [idle[0]]
    survivors = list(group)
    relief = [p for p in survivors if p.kind in RELIEF_KINDS]
    if relief:
        top = max(authority.get(p.agent, 0) for p in relief)
        for p in list(survivors):
            lower = authority.get(p.agent, 0) < top
            undoes = (
                p.kind in {"right_size", "consolidation"} or p.change.get("replicas") is not None
            )
            if lower and undoes:
                supersede(
                    p,
                    f"{relief[0].agent} found {p.target} under pressure "
                    f"({relief[0].title}); performance outranks cost",
                )
                survivors.remove(p)
    hardware = [p for p in survivors if p.kind in HARDWARE_KINDS]
    merged = _fewer_replicas_then_spot(hardware)
    if merged is not None:
        resized, spot, rescaled = merged
        survivors.remove(spot)
        if rescaled is None:
            supersede(spot, f"after {resized.title} no replica is left to move to spot")
        else:
            decisions[spot.key].proposal = rescaled
            decisions[rescaled.key] = decisions.pop(spot.key)
            decisions[rescaled.key].reason = f"rescaled to follow {resized.title}"
            survivors.append(rescaled)
        hardware = [resized]
    if len(hardware) > 1:
        best = max(hardware, key=lambda p: p.monthly_saving_usd())
        for p in hardware:
            if p is not best:
                supersede(p, f"changes the same hardware as {best.title}, which saves more")
                survivors.remove(p)
    return survivors


def _fewer_replicas_then_spot(
    hardware: list[Proposal],
) -> tuple[Proposal, Proposal, Proposal | None] | None:
    """A replica-count right-sizing and a spot migration of one target merge: first the
    count, then spot for all but the on-demand floor of what is left (its saving scaled
    to the replicas that actually move). Returns (resize, spot, rescaled spot or None)."""
    resize = [
        p
        for p in hardware
        if p.kind == "right_size" and "gpu" in p.change and p.evidence.get("same_hardware")
    ]
    spots = [p for p in hardware if p.kind == "spot_migration"]
    if len(hardware) != 2 or len(resize) != 1 or len(spots) != 1:
        return None
    resized, spot = resize[0], spots[0]
    moved = int(spot.change["replicas_to_spot"])
    keep = int(spot.change["keep_on_demand"])
    already = int(spot.evidence.get("replicas", moved + keep)) - moved - keep
    now_moving = max(0, int(resized.change["replicas"]) - keep - max(already, 0))
    if now_moving == 0:
        return resized, spot, None
    share = now_moving / moved
    deltas = {
        name: delta.model_copy(
            update={
                "value": delta.value * share,
                "low": None if delta.low is None else delta.low * share,
                "high": None if delta.high is None else delta.high * share,
                "basis": f"{delta.basis}; {now_moving} of {moved} replicas after the resize",
            }
        )
        for name, delta in spot.expected_deltas.items()
    }
    saving = spot.monthly_saving_usd() * share
    notice = spot.evidence.get("interruption_notice_seconds")
    rescaled = spot.model_copy(
        update={
            "change": {**spot.change, "replicas_to_spot": now_moving},
            "expected_deltas": deltas,
            "title": f"move {now_moving} of {resized.change['replicas']} "
            f"{spot.target} replicas to spot",
            "narrative": (
                f"After the right-sizing to {resized.change['replicas']} replicas, "
                f"{now_moving} of them move to spot and {keep} stays on-demand; at the "
                f"spot price of ${spot.evidence.get('spot_price_usd_per_hour', 0):.3f}/h "
                f"this saves ${saving:,.0f}/month more"
                + (f" (interruptions come with {notice} s notice)." if notice else ".")
            ),
        }
    )
    return resized, spot, rescaled


def plan_summary(plan: PlanDraft) -> dict[str, Any]:
    """A JSON-able view of a plan (artifact, state store)."""
    return {
        "rank": plan.rank,
        "tenant": plan.tenant,
        "provider": plan.provider,
        "target": plan.target,
        "title": plan.title,
        "risk": plan.risk.value,
        "confidence": plan.confidence,
        "monthly_saving_usd": round(plan.monthly_saving_usd, 2),
        "relieves_performance": plan.relieves_performance,
        "kinds": [p.kind for p in plan.proposals],
    }
