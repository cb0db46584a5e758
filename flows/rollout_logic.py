"""The rollout's decisions as plain functions: which steps, what a verdict leads to, what
a plan changes where, and what the change really saved. No Prefect, no stores: each is
tested with a few values (tests/flows/test_rollout_logic.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pandas as pd

from optiinfra.approvals import ApprovalLimits
from optiinfra.config import OptiInfraConfig

#: The steps of a rollout unless a recommendation or the caller says otherwise.
DEFAULT_STEPS: tuple[int, ...] = (10, 50, 100)
#: 8,760 h / 12, the convention the agents' monthly figures use.
HOURS_PER_MONTH = 730.0

Action = Literal["next", "extend", "rollback"]
OrphanAction = Literal["resume", "rollback"]


class RolloutRefused(ValueError):
    """The plan cannot be rolled out as asked (no change, unknown provider, bad steps)."""


def plan_steps(
    steps: Sequence[int], *, first_step: int | None = None, max_percent: int = 100
) -> list[int]:
    """The percentages to go through, in order.

    ``first_step`` (a recommendation's ``first_step_percent``, e.g. 5 for a risky change)
    replaces the steps with ``[first, 50, 100]``. ``max_percent`` (the approval's or the
    policy's limit) cuts the list and becomes its last step, so a 50 % limit gives
    ``[10, 50]`` and a 30 % one ``[10, 30]``.

    >>> plan_steps([10, 50, 100], max_percent=30)
    [10, 30]
    """
    chosen = [first_step, 50, 100] if first_step else list(steps)
    if not chosen:
        raise RolloutRefused("a rollout needs at least one step")
    for percent in chosen:
        if not 1 <= int(percent) <= 100:
            raise RolloutRefused(f"step {percent}%: steps are percentages from 1 to 100")
    if not 1 <= max_percent <= 100:
        raise RolloutRefused(f"max_percent {max_percent}: expected 1 to 100")
    ordered = sorted({int(p) for p in chosen})
    kept = [p for p in ordered if p < max_percent]
    if ordered[-1] >= max_percent:
        kept.append(max_percent)
    return kept


def next_action(verdict: str, *, rounds: int, max_rounds: int) -> Action:
    """What a canary verdict leads to after ``rounds`` bake rounds (1 = the first).

    ``pass`` → the next step; ``fail`` → roll back; ``wait`` (too few samples to tell)
    → bake another round, and once ``max_rounds`` are spent, roll back as undecided:
    a change not shown to be safe is not given a larger share, and a canary left
    waiting indefinitely is the half-applied state a rollout must never end in.
    """
    if verdict == "pass":
        return "next"
    if verdict == "fail":
        return "rollback"
    if verdict == "wait":
        return "extend" if rounds < max_rounds else "rollback"
    raise ValueError(f"unknown canary verdict {verdict!r}")


def window_problem(limits: ApprovalLimits, now: datetime) -> str | None:
    """Why the approval's window forbids starting now, or None when it allows it."""
    if limits.not_before is not None and now < limits.not_before:
        return f"approved for no earlier than {limits.not_before:%Y-%m-%d %H:%M:%S} UTC"
    if limits.not_after is not None and now > limits.not_after:
        return f"approved for no later than {limits.not_after:%Y-%m-%d %H:%M:%S} UTC"
    return None


def max_percent(config: OptiInfraConfig, tenant: str, limits: ApprovalLimits) -> int:
    """The tighter of the approval's ``max_rollout_percent`` and the tenant's policy."""
    policy = next((p for p in config.policies if p.tenant == tenant), None)
    caps = [100, limits.max_rollout_percent or 100, policy.max_rollout_percent if policy else 100]
    return min(caps)


def orphan_action(orphan_plan: str, requested_plan: str, preference: OrphanAction) -> OrphanAction:
    """A rollout whose process died is resumed by a run asked for the same plan (unless
    the caller prefers rolling back); any other run rolls it back, since nobody would
    otherwise watch its canary."""
    return "resume" if orphan_plan == requested_plan and preference == "resume" else "rollback"


def merge_changes(changes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One change from a plan's recommendations on one target (``engine_args`` merged
    key by key, later recommendations winning on the same key)."""
    out: dict[str, Any] = {}
    for change in changes:
        for key, value in change.items():
            if key == "engine_args" and isinstance(value, Mapping):
                out["engine_args"] = {**out.get("engine_args", {}), **value}
            elif key in ("quantization", "kv_cache_dtype"):
                out["engine_args"] = {**out.get("engine_args", {}), key: value}
            else:
                out[key] = value
    return out


@dataclass(frozen=True)
class SLOLimits:
    """The SLO and quality limits a canary is held to (from providers.yaml)."""

    max_quality_drop: float = 0.10
    ttft_p95_s: float | None = None
    itl_p95_s: float | None = None
    max_error_rate: float | None = None


def slo_limits(config: OptiInfraConfig, tenant: str, deployment: str) -> SLOLimits:
    """The tenant's policy quality limit and the SLO of the deployment (its own entry,
    else the tenant's ``*`` entry)."""
    policy = next((p for p in config.policies if p.tenant == tenant), None)
    slos = [s for s in config.slos if s.tenant == tenant]
    slo = next((s for s in slos if s.deployment == deployment), None) or next(
        (s for s in slos if s.deployment == "*"), None
    )
    return SLOLimits(
        max_quality_drop=policy.max_quality_drop if policy else 0.10,
        ttft_p95_s=slo.ttft_p95_seconds if slo else None,
        itl_p95_s=slo.itl_p95_seconds if slo else None,
        max_error_rate=slo.max_error_rate if slo else None,
    )


def expected_saving_usd_per_hour(expected_deltas: Mapping[str, Any]) -> float | None:
    """The saving a plan promised, per hour (positive = cheaper), from its
    ``cost_usd_per_month`` or ``cost_usd_per_hour`` delta; None when it promised none."""
    for key, scale in (("cost_usd_per_hour", 1.0), ("cost_usd_per_month", 1 / HOURS_PER_MONTH)):
        entry = expected_deltas.get(key)
        value = entry.get("value") if isinstance(entry, Mapping) else entry
        if isinstance(value, int | float) and math.isfinite(value):
            return -float(value) * scale
    return None


def cost_per_hour(prices: pd.DataFrame) -> float | None:
    """What a deployment costs per hour: each instance's latest ``price_usd_per_hour``
    sample, summed (columns ``instance``, ``ts``, ``value``); None without prices."""
    if prices.empty:
        return None
    latest = prices.sort_values("ts").groupby("instance", observed=True)["value"].last()
    return float(latest.sum())


def realised_deltas(before: float | None, after: float | None) -> dict[str, Any]:
    """The cost the change really made, as the Outcome stores it (with units)."""
    if before is None or after is None:
        return {}
    delta = after - before
    return {
        "cost_usd_per_hour": {
            "before": round(before, 6),
            "after": round(after, 6),
            "value": round(delta, 6),
            "unit": "USD/h",
        },
        "cost_usd_per_month": {"value": round(delta * HOURS_PER_MONTH, 2), "unit": "USD/month"},
    }
