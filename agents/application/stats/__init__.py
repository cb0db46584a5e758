"""Answer-quality statistics for the application agent: baselines, regressions, A/B, margins.

Plain functions over quality-event frames (``QualityEvent.COLUMNS``), no stores, no graph:
the agent's nodes call them, and every number in its proposals comes from here. The
method — items as units, which test when, what "unknown" means — is written down in
``docs/quality-statistics.md``.

Example::

    result = detect_regression(canary_events, stable_events, "f1", threshold=0.10)
    if result.verdict == "regression" and result.exceeds_threshold:
        ...  # roll back
"""

from agents.application.stats.baseline import (
    BASELINE_COLUMNS,
    QualityMargin,
    baselines,
    quality_margin,
    quality_margins,
)
from agents.application.stats.compare import (
    ABResult,
    ABVerdict,
    RegressionResult,
    Verdict,
    compare_ab,
    detect_regression,
)
from agents.application.stats.evidence import cliffs_delta, cohens_d, cohens_h
from agents.application.stats.intervals import (
    mean_interval,
    newcombe_interval,
    welch_interval,
    wilson_interval,
)
from agents.application.stats.multiple import (
    BHResult,
    benjamini_hochberg,
    expected_false_alarms,
    family_false_alarm_probability,
)
from agents.application.stats.power import minimum_detectable_drop, required_samples
from agents.application.stats.samples import METRICS, Metric

__all__ = [
    "BASELINE_COLUMNS",
    "METRICS",
    "ABResult",
    "ABVerdict",
    "BHResult",
    "Metric",
    "QualityMargin",
    "RegressionResult",
    "Verdict",
    "baselines",
    "benjamini_hochberg",
    "cliffs_delta",
    "cohens_d",
    "cohens_h",
    "compare_ab",
    "detect_regression",
    "expected_false_alarms",
    "family_false_alarm_probability",
    "mean_interval",
    "minimum_detectable_drop",
    "newcombe_interval",
    "quality_margin",
    "quality_margins",
    "required_samples",
    "welch_interval",
    "wilson_interval",
]
