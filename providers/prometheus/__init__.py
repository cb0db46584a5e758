"""The generic metrics collector: any PromQL API, or ``/metrics`` scraped directly.

Importing the package registers the ``prometheus`` provider kind (aliases ``promql``,
``scrape``). See :mod:`providers.prometheus.adapter` for configuration and behaviour.
"""

from providers.prometheus.adapter import (
    CollectionFailed,
    PrometheusProvider,
    TargetStatus,
)
from providers.prometheus.options import OPTIONS, PrometheusOptions

__all__ = [
    "OPTIONS",
    "CollectionFailed",
    "PrometheusOptions",
    "PrometheusProvider",
    "TargetStatus",
]
