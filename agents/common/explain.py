"""Ask the explainer (``optiinfra.llm``) to word a proposal; figures stay the detector's.

What is sent: the kind, the target, every expected delta (value, unit, interval ends)
and the numeric evidence as figures, the proposal's title, and the template narrative
code wrote. The LLM's reply passes the number guard or the template text stays.
"""

from __future__ import annotations

import math
from typing import Any

from agents.common.proposals import Proposal


def _figures(proposal: Proposal) -> dict[str, Any]:
    from optiinfra.llm import Figure

    figures: dict[str, Any] = {}
    for name, delta in proposal.expected_deltas.items():
        if not math.isfinite(delta.value):
            continue  # an unbounded figure is not a number the LLM may quote
        figures[name] = Figure(value=delta.value, unit=delta.unit)
        low, high = delta.bounds()
        if (low, high) != (delta.value, delta.value):
            if math.isfinite(low):
                figures[f"{name}_low"] = Figure(value=low, unit=delta.unit)
            if math.isfinite(high):
                figures[f"{name}_high"] = Figure(value=high, unit=delta.unit)
    for name, value in proposal.evidence.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            figures[name] = Figure(value=float(value))
    figures["confidence"] = Figure(value=proposal.confidence, unit="ratio")
    return figures


def explain_proposal(explainer: Any, proposal: Proposal) -> Proposal:
    """The proposal with the explainer's narrative, or unchanged if it fell back."""
    from optiinfra.llm import ExplanationRequest, TemplateText

    request = ExplanationRequest(
        kind=proposal.kind,
        target=proposal.target,
        figures=_figures(proposal),
        evidence=[proposal.title],
        template=TemplateText(summary=proposal.narrative or proposal.title),
    )
    explanation = explainer.explain(request)
    if explanation.source != "llm":
        return proposal
    text = " ".join(
        part for part in (explanation.summary, explanation.rationale) if part
    ) + "".join(f" Risk: {r}" for r in explanation.risks)
    return proposal.model_copy(update={"narrative": text, "explanation_source": "llm"})
