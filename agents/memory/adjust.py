"""How recalled outcomes change a new proposal: confidence, expected saving, first step.

Three rules, each a plain function of the recalled outcomes of the same kind:

1. **Confidence** moves toward the track record of similar decisions: the similarity-
   weighted mean of realised/expected saving (a rollback realised nothing: 0), by a
   share ``α = Σ similarity / (Σ similarity + 1)`` — one very similar outcome moves it
   half way, three about three quarters.
2. **Expected cost deltas** are scaled the same way, but only by outcomes that were not
   rolled back (a rollback says the change was unsafe, not that its saving was wrong);
   the delta's ``basis`` says so.
3. **Rollbacks** in similar contexts (similarity ≥ 0.90: the same kind and ≈ 80% of
   the context alike) since the last similar success make the rollout start smaller:
   the next step below the smallest first step that failed, on the ladder 10 → 5 → 2
   percent (``evidence["first_step_percent"]``), and raise the risk one level. Two such
   rollbacks at similarity ≥ 0.95 (≈ 90% of the context alike), or one at the smallest
   step, drop the proposal: the same change is not proposed again until the context
   changes.

Example::

    adjusted = adjust(proposal, recall_similar(memory, features))
    if adjusted.proposal is None:
        notes.append(adjusted.reason)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agents.common.proposals import Delta, Proposal, Risk
from agents.memory.outcomes import RecalledOutcome

#: First rollout step when nothing was rolled back (flows' default plan: 10 → 50 → 100).
DEFAULT_FIRST_STEP = 10.0
#: Smaller first steps after rollbacks, largest first.
STEP_LADDER = (10.0, 5.0, 2.0)
#: A rollback this similar makes the next first step smaller.
ROLLBACK_SIMILARITY = 0.90
#: Two rollbacks this similar drop the proposal.
DROP_SIMILARITY = 0.95
#: How many perfectly similar outcomes weigh as much as the detector's own estimate.
PRIOR_WEIGHT = 1.0
#: Realised/expected ratios are capped here: one lucky month does not triple a forecast.
MAX_RATIO = 1.5
#: Confidence never rises above this from history alone.
MAX_CONFIDENCE = 0.95

_RISK_UP = {Risk.LOW: Risk.MEDIUM, Risk.MEDIUM: Risk.HIGH, Risk.HIGH: Risk.HIGH}


@dataclass(frozen=True)
class Adjusted:
    """The adjusted proposal, or None with the reason it was dropped."""

    proposal: Proposal | None
    reason: str = ""


def adjust_proposal(proposal: Proposal, recalled: Sequence[RecalledOutcome]) -> Proposal | None:
    """The proposal as its similar past outcomes suggest, or None to drop it."""
    return adjust(proposal, recalled).proposal


def adjust(proposal: Proposal, recalled: Sequence[RecalledOutcome]) -> Adjusted:
    """:func:`adjust_proposal` with the reason when the proposal is dropped."""
    same = sorted(
        (r for r in recalled if r.outcome.kind == proposal.kind),
        key=lambda r: -r.similarity,
    )
    if not same:
        return Adjusted(proposal)
    summaries = [r.summary() for r in same]
    evidence = dict(proposal.evidence)
    evidence["similar_outcomes"] = summaries
    update: dict[str, Any] = {"recalled": summaries, "evidence": evidence}

    rollbacks = _recent_rollbacks(same)
    if rollbacks:
        failed_step = min(r.outcome.first_step_percent for r in rollbacks)
        close = [r for r in rollbacks if r.similarity >= DROP_SIMILARITY]
        where = f"{proposal.kind} on {proposal.target}"
        if len(close) >= 2:
            return Adjusted(
                None,
                f"{where} not proposed: rolled back {len(close)} times in near-identical "
                f"contexts (similarity ≥ {DROP_SIMILARITY:g}; plans "
                f"{', '.join(r.outcome.plan_id for r in close)}): {close[0].outcome.reason}",
            )
        step = _smaller_step(failed_step)
        if step is None:
            return Adjusted(
                None,
                f"{where} not proposed: a similar change (plan {rollbacks[0].outcome.plan_id}, "
                f"similarity {rollbacks[0].similarity:.2f}) was rolled back even at a first "
                f"step of {failed_step:g}%: {rollbacks[0].outcome.reason}",
            )
        current = evidence.get("first_step_percent")
        evidence["first_step_percent"] = min(step, float(current)) if current else step
        evidence["first_step_reason"] = (
            f"a similar {proposal.kind} (plan {rollbacks[0].outcome.plan_id}, similarity "
            f"{rollbacks[0].similarity:.2f}) was rolled back at a first step of "
            f"{failed_step:g}%: {rollbacks[0].outcome.reason}"
        )
        update["risk"] = _RISK_UP[proposal.risk]

    weights = [r.similarity for r in same]
    ratios = [_ratio(r) for r in same]
    known = [(w, x) for w, x in zip(weights, ratios, strict=True) if x is not None]
    if known:
        alpha, mean = _shrink(known)
        target = min(mean, 1.0)
        confidence = (1 - alpha) * proposal.confidence + alpha * target
        if confidence > proposal.confidence:
            confidence = min(confidence, max(proposal.confidence, MAX_CONFIDENCE))
        update["confidence"] = round(min(1.0, max(0.0, confidence)), 3)
    realised = [
        (w, x)
        for w, x, r in zip(weights, ratios, same, strict=True)
        if x is not None and not r.outcome.rolled_back
    ]
    factor = None
    if realised:
        alpha, mean = _shrink(realised)
        factor = (1 - alpha) + alpha * mean
        update["expected_deltas"] = _scaled_cost(proposal.expected_deltas, factor, len(realised))
    evidence["memory_adjustment"] = {
        "similar_outcomes": len(same),
        "confidence_before": proposal.confidence,
        "confidence_after": update.get("confidence", proposal.confidence),
        "saving_factor": None if factor is None else round(factor, 3),
    }
    return Adjusted(proposal.model_copy(update=update))


def _ratio(recalled: RecalledOutcome) -> float | None:
    """Realised / expected monthly saving of one outcome; a rollback realised nothing."""
    if recalled.outcome.rolled_back:
        return 0.0
    expected = recalled.features.expected_saving_usd_per_month
    realised = recalled.outcome.saving_usd_per_month
    if expected is None or realised is None or expected <= 0:
        return None
    return min(MAX_RATIO, max(0.0, realised / expected))


def _shrink(pairs: Sequence[tuple[float, float | None]]) -> tuple[float, float]:
    """(α, similarity-weighted mean ratio): how far history moves an estimate, and where."""
    total = sum(w for w, _ in pairs)
    mean = sum(w * (x or 0.0) for w, x in pairs) / total
    return total / (total + PRIOR_WEIGHT), mean


def _recent_rollbacks(same: Sequence[RecalledOutcome]) -> list[RecalledOutcome]:
    """Similar rollbacks that no later similar success has answered, most similar first."""
    close = [r for r in same if r.similarity >= ROLLBACK_SIMILARITY]
    successes = [r.outcome.finished_at for r in close if not r.outcome.rolled_back]
    since: datetime | None = max(successes) if successes else None
    return [
        r
        for r in close
        if r.outcome.rolled_back and (since is None or r.outcome.finished_at > since)
    ]


def _smaller_step(failed: float) -> float | None:
    """The next first step below ``failed`` on the ladder; None below its bottom."""
    smaller = [s for s in STEP_LADDER if s < failed]
    return max(smaller) if smaller else None


def _scaled_cost(deltas: dict[str, Delta], factor: float, n: int) -> dict[str, Delta]:
    """Cost deltas (USD units) × factor, the basis saying why; other deltas unchanged."""
    note = f"× {factor:.2f} from {n} similar past outcome(s), realised / expected saving"
    out: dict[str, Delta] = {}
    for name, delta in deltas.items():
        if not delta.unit.startswith("USD") or not name.startswith("cost_"):
            out[name] = delta
            continue
        out[name] = delta.model_copy(
            update={
                "value": delta.value * factor,
                "low": None if delta.low is None else delta.low * factor,
                "high": None if delta.high is None else delta.high * factor,
                "basis": f"{delta.basis}; {note}" if delta.basis else note,
            }
        )
    return out
