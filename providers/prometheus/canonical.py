"""From mapped samples to canonical rows, and from rows to a Sample frame.

Gauges go through :func:`optiinfra.metrics.normalise_gauges` (units, label renames) one
source name at a time, then ranks are combined in two steps:

1. copies — series that differ only by ``tp_rank``/``pp_rank``/``moe_ep_rank`` describe
   one scheduler batch (SGLang reports it per pipeline stage, and per TP rank with
   ``--enable-metrics-for-all-schedulers``): the max is taken, never the sum;
2. partitions — what is left differs by ``dp_rank`` or vLLM's ``engine`` (independent
   engines of one server) and by labels the collector does not keep: combined with the
   table's ``rank_aggregation`` through :func:`optiinfra.metrics.aggregate_ranks`.

:func:`merge` then keeps, for each canonical series, the row from the earliest table row
(new name before old, a windowed counter before the engine's own gauge).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

import pandas as pd

from optiinfra.config import ProviderConfig
from optiinfra.metrics import aggregate_ranks, normalise_gauges
from optiinfra.models import Sample
from providers.prometheus.detect import engine_label
from providers.prometheus.options import PrometheusOptions
from providers.prometheus.series import (
    PARTITION_RANK_LABELS,
    LabelPolicy,
    RawSeries,
    Row,
    table_rank,
    without_replicas,
)


def gauge_rows(raw: Iterable[RawSeries], policy: LabelPolicy) -> list[Row]:
    """Canonical rows of the mapped gauges of one reading."""
    by_name: dict[tuple[str, str], list[RawSeries]] = defaultdict(list)
    for series in raw:
        if series.mapping.derive == "value":
            by_name[(series.source, series.mapping.source_name)].append(series)
    rows: list[Row] = []
    for (source, source_name), group in by_name.items():
        mapping = group[0].mapping
        values = normalise_gauges(source, [(s.name, dict(s.labels), s.value) for s in group])
        rank = table_rank(source, source_name)
        if mapping.rank_aggregation == "none":
            rows += [Row(source, rank, c, labels, v) for c, labels, v in values]
            continue
        copies: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for canonical, labels, value in values:
            key = (canonical, without_replicas(labels))
            copies[key] = max(copies.get(key, value), value)
        kept = policy.kept_names(mapping, renamed=True) | set(PARTITION_RANK_LABELS)
        projected = [
            (canonical, {k: v for k, v in labels if k in kept}, value)
            for (canonical, labels), value in copies.items()
        ]
        rows += [
            Row(source, rank, c, labels, v) for c, labels, v in aggregate_ranks(source, projected)
        ]
    return rows


def merge(rows: Iterable[Row]) -> list[Row]:
    """One row per (canonical, labels): the one fed by the earliest table row."""
    best: dict[tuple[str, tuple[tuple[str, str], ...]], Row] = {}
    for row in rows:
        key = (row.canonical, tuple(sorted(row.labels.items())))
        if key not in best or row.rank < best[key].rank:
            best[key] = row
    return list(best.values())


def to_frame(
    items: Sequence[tuple[str, datetime, Row]],
    config: ProviderConfig,
    options: PrometheusOptions,
) -> pd.DataFrame:
    """``(instance, ts, row)`` triples → a frame with exactly ``Sample.COLUMNS``.

    The deployment comes from ``options.label_deployment`` (leaving the labels), else
    ``options.deployment``; the provider's configured labels are added to every sample.
    Built as plain rows (not one pydantic object each): a 1,000-target cycle yields tens
    of thousands of samples.
    """
    records = []
    for instance, ts, row in items:
        labels = dict(row.labels)
        deployment = labels.pop(options.label_deployment, "") or options.deployment
        records.append(
            {
                "ts": ts,
                "tenant": config.tenant,
                "provider": config.name,
                "region": config.region,
                "instance": instance,
                "deployment": deployment,
                "engine": engine_label(row.source),
                "metric": row.canonical,
                "value": float(row.value),
                "labels": {**config.labels, **labels},
            }
        )
    return pd.DataFrame.from_records(records, columns=list(Sample.COLUMNS))
