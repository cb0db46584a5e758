"""Answer quality: golden-set probes and sampled real interactions, scored into quality
events (docs/quality.md). Importing this package registers the ``quality`` provider kind.
"""

from providers.quality.adapter import QualityCollectionError, QualityProvider
from providers.quality.golden import GoldenItem, GoldenSet, load_golden_set, select_items
from providers.quality.judge import Judge, Verdict, parse_verdict
from providers.quality.probes import CONFIG_ID_HEADER

__all__ = [
    "CONFIG_ID_HEADER",
    "GoldenItem",
    "GoldenSet",
    "Judge",
    "QualityCollectionError",
    "QualityProvider",
    "Verdict",
    "load_golden_set",
    "parse_verdict",
    "select_items",
]
