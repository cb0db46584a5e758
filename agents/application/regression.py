"""Did a deployment's latest configuration change cost answer quality?

The application agent compares, per (tenant, deployment), the configuration whose
quality events are the most recent against the one before it — "after the change"
against "before" — with :func:`~agents.application.stats.detect_regression` on F1, the
tenant's ``max_quality_drop`` as the drop that matters, at ``SWEEP_ALPHA``. This module
is that comparison and the note it becomes, as plain functions, so the agent's node, the
benchmark (``benchmarks/quality_regression_bench.py``) and the tests run the same call.

Example::

    for c in compare_latest_configs(events, lambda tenant: 0.10):
        print(c.note())  # "chat: quality of configuration 3f… against 9a…: regression — …"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from agents.application.stats import RegressionResult, detect_regression
from agents.application.stats.samples import Metric

METRIC: Metric = "f1"

#: One-sided significance level of the between-configuration check. Lower than the 0.05
#: of a single planned canary test because this check is a sweep: it runs every hour on
#: every deployment, so at 0.05 a healthy deployment would collect 1.2 false notes a day.
#: On the sandbox (benchmarks/quality_regression_bench.py, 500 seeds, a day of probes
#: before a change and an hour after) 0.02 flags 1.0% of quality-neutral changes and
#: 98.6% of int4 at 8B; 0.01 flags 0.6% and 96.2%; 0.05 flags 5.0% and 99.6%.
SWEEP_ALPHA = 0.02

#: How a verdict reads in a note.
VERDICT_WORDS = {
    "regression": "regression",
    "no_regression": "no regression",
    "improvement": "improvement",
    "unknown": "unknown",
}


@dataclass(frozen=True)
class ConfigComparison:
    """The current configuration of a deployment against its previous one."""

    tenant: str
    deployment: str
    current: str
    previous: str
    result: RegressionResult
    max_quality_drop: float

    @property
    def flagged(self) -> bool:
        """A significant drop (however small; ``beyond_allowance`` says if it matters)."""
        return self.result.verdict == "regression"

    @property
    def beyond_allowance(self) -> bool:
        """A significant drop at least as large as the tenant's ``max_quality_drop``."""
        return self.flagged and self.result.exceeds_threshold

    def note(self) -> str:
        """One line for the report: verdict, the test's reason, and for a significant
        change its effect size and whether it is within the tenant's allowance."""
        r = self.result
        size = ""
        if r.verdict in ("regression", "improvement"):
            where = "beyond" if r.exceeds_threshold else "within"
            size = (
                f"; effect size {r.effect_size:+.2f} ({r.effect_size_name}), {where} the"
                f" tenant's {self.max_quality_drop:.0%} allowance"
            )
        return (
            f"{self.deployment}: quality of configuration {self.current or '(none)'} against "
            f"{self.previous or '(none)'}: {VERDICT_WORDS[r.verdict]} — {r.reason}{size}"
        )


def latest_two(events: pd.DataFrame) -> tuple[str, str] | None:
    """(current, previous) config ids of one deployment's events, by when each was last
    seen; None with fewer than two configurations."""
    order = events.groupby("config_id")["ts"].max().sort_values()
    if len(order) < 2:
        return None
    return str(order.index[-1]), str(order.index[-2])


def compare_latest_configs(
    events: pd.DataFrame, max_quality_drop: Callable[[str], float]
) -> list[ConfigComparison]:
    """One comparison per (tenant, deployment) with at least two configurations.

    ``events`` has the columns of ``QualityEvent.COLUMNS``; ``max_quality_drop(tenant)``
    is the tenant's allowance (``Policy.max_quality_drop``), used as the test's threshold.
    """
    if events.empty:
        return []
    frame = events.copy()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["config_id"] = frame["config_id"].fillna("").astype(str)
    found = []
    for (tenant, deployment), group in frame.groupby(["tenant", "deployment"], sort=True):
        pair = latest_two(group)
        if pair is None:
            continue
        current, previous = pair
        allowance = max_quality_drop(str(tenant))
        result = detect_regression(
            group[group["config_id"] == current],
            group[group["config_id"] == previous],
            METRIC,
            threshold=allowance,
            alpha=SWEEP_ALPHA,
        )
        found.append(
            ConfigComparison(str(tenant), str(deployment), current, previous, result, allowance)
        )
    return found
