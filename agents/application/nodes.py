"""The application agent's nodes: quality baselines per deployment and configuration,
and regressions of the current configuration against the previous one."""

from __future__ import annotations

from typing import Any

import pandas as pd

from agents.application.stats import baselines, detect_regression
from agents.common.state import AgentState

METRIC = "f1"


def load_context(state: AgentState) -> dict[str, Any]:
    """Say which deployments have no quality events (their quality is unknown)."""
    quality = state.context.quality
    known = set(quality["deployment"]) if not quality.empty else set()
    notes = [
        f"{d['provider']}/{d['deployment']}: no quality events in the window; its answer "
        "quality is unknown"
        for d, _ in state.context.deployment_rows()
        if d["deployment"] not in known
    ]
    return {"notes": state.notes + notes} if notes else {}


def detect(state: AgentState) -> dict[str, Any]:
    """Findings (notes) for regressions between each deployment's latest two configs.

    The agent proposes no change of its own here: a regression found between two
    configurations is for the rollout's canary analysis and the people reading the
    report; its assessments are where it acts (see ``ApplicationAgent.assess``).
    """
    quality = state.context.quality
    if quality.empty:
        return {}
    notes = list(state.notes)
    events = quality.copy()
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    for (tenant, deployment), group in events.groupby(["tenant", "deployment"]):
        order = group.groupby("config_id")["ts"].max().sort_values()
        if len(order) < 2:
            continue
        current, previous = order.index[-1], order.index[-2]
        policy = state.context.policy(str(tenant))
        result = detect_regression(
            group[group["config_id"] == current],
            group[group["config_id"] == previous],
            METRIC,
            threshold=policy.max_quality_drop,
        )
        size = (
            f"; effect size {result.effect_size:+.2f} ({result.effect_size_name}), "
            f"{'beyond' if result.exceeds_threshold else 'within'} the tenant's "
            f"{policy.max_quality_drop:.0%} allowance"
            if result.verdict in ("regression", "improvement")
            else ""
        )
        notes.append(
            f"{deployment}: quality of configuration {current or '(none)'} against "
            f"{previous or '(none)'}: {result.verdict} — {result.reason}{size}"
        )
    return {"notes": notes}


def baseline_frame(state_quality: pd.DataFrame) -> pd.DataFrame:
    """Baselines of every (tenant, deployment, configuration) in the window."""
    return baselines(state_quality) if not state_quality.empty else state_quality
