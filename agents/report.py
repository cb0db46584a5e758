"""The optimize run as markdown for the Prefect UI: plans, figures, reasons, notes.

Every figure printed here comes from a detector or an assessment; the narrative is the
only text an LLM may have written, and it is labelled as such.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

from agents.common.proposals import Delta
from agents.coordinator import CoordinatorResult, PlanDraft


def _money(value: float) -> str:
    return f"${value:,.0f}" if abs(value) >= 100 else f"${value:,.2f}"


def _delta(name: str, delta: Delta) -> str:
    low, high = delta.bounds()
    if delta.unit == "s":
        fmt = lambda v: f"{v * 1000:+.0f} ms"  # noqa: E731
    elif delta.unit.startswith("USD"):
        fmt = lambda v: f"{'-' if v < 0 else '+'}{_money(abs(v))}{delta.unit[3:]}"  # noqa: E731
    else:
        fmt = lambda v: f"{v:+,.3g} {delta.unit}"  # noqa: E731
    text = f"{name}: {fmt(delta.value)}"
    if (low, high) != (delta.value, delta.value) and math.isfinite(low):
        text += f" ({fmt(low)} to {fmt(high) if math.isfinite(high) else '∞'})"
    return text


def render_report(
    result: CoordinatorResult,
    *,
    run_id: str,
    timings: Mapping[str, float],
    notes: Sequence[str],
    plan_ids: Mapping[int, str] | None = None,
    llm: str = "none",
) -> str:
    lines = [f"# Optimize run {run_id}", ""]
    total = sum(p.monthly_saving_usd for p in result.plans)
    lines.append(
        f"**{len(result.plans)} plan(s)** waiting for approval, "
        f"{_money(total)}/month of expected savings in all. Explanations: {llm}."
    )
    lines.append("")
    if result.plans:
        lines += [
            "| # | target | change | saving / month | risk | confidence | assessments |",
            "|---|---|---|---|---|---|---|",
        ]
        for plan in result.plans:
            verdicts = ", ".join(f"{a.agent}: {a.verdict.value}" for a in plan.assessments) or "—"
            lines.append(
                f"| {plan.rank} | {plan.target} | {plan.title} | "
                f"{_money(plan.monthly_saving_usd)} | {plan.risk.value} | "
                f"{plan.confidence:.0%} | {verdicts} |"
            )
        lines.append("")
        for plan in result.plans:
            lines += _plan_section(plan, (plan_ids or {}).get(plan.rank))
    discarded = result.discarded()
    if discarded:
        lines += [
            "## Not planned",
            "",
            "| agent | target | proposal | status | why |",
            "|---|---|---|---|---|",
        ]
        for d in discarded:
            lines.append(
                f"| {d.proposal.agent} | {d.proposal.target} | {d.proposal.title} | "
                f"{d.status} | {d.reason} |"
            )
        lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if timings:
        lines += ["## Timings", ""] + [f"- {k}: {v:.2f} s" for k, v in timings.items()] + [""]
    return "\n".join(lines)


def _plan_section(plan: PlanDraft, plan_id: str | None) -> list[str]:
    head = f"## {plan.rank}. {plan.title}"
    lines = [head, ""]
    if plan_id:
        lines += [f"Plan id: `{plan_id}`", ""]
    for proposal in plan.proposals:
        lines.append(
            f"**{proposal.agent} / {proposal.kind}** ({proposal.detector}): "
            f"change `{proposal.change}`"
        )
        lines.append("")
        label = "LLM-written" if proposal.explanation_source == "llm" else "template"
        lines.append(f"> {proposal.narrative} _({label})_")
        lines.append("")
        for name, delta in proposal.expected_deltas.items():
            lines.append(f"- {_delta(name, delta)}" + (f" — {delta.basis}" if delta.basis else ""))
        if proposal.recalled:
            lines.append(f"- similar past decisions: {len(proposal.recalled)}")
        lines.append("")
    for assessment in plan.assessments:
        lines.append(
            f"- **{assessment.agent}** says _{assessment.verdict.value}_: {assessment.reason}"
        )
    lines.append("")
    return lines


def render_approval_request(
    plans: Sequence[PlanDraft],
    plan_ids: Mapping[int, str],
    *,
    run_id: str,
    timeout_text: str,
    similar_outcomes: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The approval form's description: every plan a reviewer is asked about, in full.

    For each plan: the exact change, where (tenant, provider, target), the figures with
    their units and ranges, risk and confidence, the other agents' assessments, and
    similar past outcomes (``similar_outcomes``: plan id → one line each; decision
    memory fills it, and without it the section says none are known).
    """
    total = sum(p.monthly_saving_usd for p in plans)
    lines = [
        f"# Approval for optimize run {run_id}",
        "",
        f"**{len(plans)} plan(s)**, {_money(total)}/month of expected savings in all. "
        "Answer *approve* or *reject* with your name and a comment; list plan ids under "
        "*plans* to answer only those (empty: every plan below). The run then asks again "
        f"about the rest. No answer within {timeout_text} counts as rejected. "
        "Nothing is applied until a rollout runs on an approved plan.",
        "",
    ]
    for plan in plans:
        plan_id = plan_ids.get(plan.rank, "")
        lines += _approval_section(plan, plan_id, (similar_outcomes or {}).get(plan_id, ()))
    return "\n".join(lines)


def _approval_section(plan: PlanDraft, plan_id: str, similar: Sequence[str]) -> list[str]:
    where = f"tenant `{plan.tenant}`, provider `{plan.provider or '—'}`, target `{plan.target}`"
    lines = [
        f"## {plan.rank}. {plan.title}",
        "",
        f"- plan id: `{plan_id}`",
        f"- where: {where}",
        f"- risk: {plan.risk.value}; confidence: {plan.confidence:.0%}",
        "",
        "### What changes",
        "",
    ]
    for position, proposal in enumerate(plan.proposals, start=1):
        label = "LLM-written" if proposal.explanation_source == "llm" else "template"
        change = json.dumps(proposal.change, default=str, sort_keys=True)
        lines.append(f"{position}. **{proposal.agent} / {proposal.kind}**: change `{change}`")
        if proposal.narrative:
            lines.append(f"   > {proposal.narrative} _({label})_")
    lines += ["", "### Expected figures", ""]
    lines += [
        f"- {_delta(name, delta)}" + (f" — {delta.basis}" if delta.basis else "")
        for name, delta in plan.expected_deltas.items()
    ] or ["- none stated"]
    lines += ["", "### Risks and assessments", ""]
    raised = [p for p in plan.proposals if p.risk.value != "low"]
    for proposal in raised:
        lines.append(f"- {proposal.kind} is {proposal.risk.value} risk")
    lines += [
        f"- **{a.agent}** says _{a.verdict.value}_: {a.reason}" for a in plan.assessments
    ] or ["- no other agent assessed this plan"]
    lines += ["", "### Similar past outcomes", ""]
    lines += [f"- {line}" for line in similar] or ["- none recorded yet"]
    lines.append("")
    return lines
