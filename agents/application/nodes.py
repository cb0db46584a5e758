"""The application agent's nodes: quality baselines per deployment and configuration,
and regressions of the current configuration against the previous one."""

from __future__ import annotations

from typing import Any

import pandas as pd

from agents.application.regression import METRIC, compare_latest_configs
from agents.application.stats import baselines
from agents.common.state import AgentState

__all__ = ["METRIC", "baseline_frame", "detect", "load_context"]


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
    comparisons = compare_latest_configs(
        quality, lambda tenant: state.context.policy(tenant).max_quality_drop
    )
    return {"notes": [*state.notes, *(c.note() for c in comparisons)]}


def baseline_frame(state_quality: pd.DataFrame) -> pd.DataFrame:
    """Baselines of every (tenant, deployment, configuration) in the window."""
    return baselines(state_quality) if not state_quality.empty else state_quality
