"""Rates, ratios and histogram quantiles from two cumulative readings of one target.

Counters and histogram buckets only grow, so what happened in a window is the
difference between a reading at its start and one at its end. This module turns the
mapped counter and histogram samples of one scrape into a small *snapshot* — cumulative
values keyed by (source name, part, ``le``, kept labels), summed over the labels the
collector does not keep (one copy taken over tensor/pipeline ranks, which repeat the
same values) — and two snapshots into canonical rows:

``rate``             Δcounter / Δt, scaled (tokens/s, requests/s, W from mJ)
``rate_of_sum``      Δ``_sum`` / Δt (TGI: tokens per request → tokens/s)
``ratio``            Δnumerator / Δdenominator (vLLM prefix-cache hits / queries)
``idle_complement``  1 − Δidle / Δt / cpus (node_exporter CPU)
``quantile``         Prometheus's ``histogram_quantile`` over the bucket deltas: linear
                     interpolation inside the bucket holding the rank, the highest
                     finite bound when the rank falls in ``+Inf``

A snapshot is also what the scrape-cursor table stores between collections
(:func:`encode` / :func:`decode`). A value that went down means the target restarted
(:func:`is_reset`); the caller then takes a fresh pair of readings instead.

Example::

    >>> round(histogram_quantile(0.5, [(0.1, 2.0), (0.5, 6.0), (math.inf, 8.0)]), 6)
    0.3
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from optiinfra.metrics import canonical_labels, lookup
from providers.prometheus.detect import source_of
from providers.prometheus.series import LabelPolicy, RawSeries, Row, table_rank, without_replicas

#: (source name, part, le, kept labels). Parts: c counter, b bucket, s histogram sum,
#: cpus (node_exporter: how many CPUs the idle counter was summed over).
Key = tuple[str, str, str, tuple[tuple[str, str], ...]]
Snapshot = dict[Key, float]
PAYLOAD_VERSION = 1


def _part(series: RawSeries) -> tuple[str, str] | None:
    """(part, le) a raw series contributes to a snapshot, or None if no window needs it."""
    mapping = series.mapping
    if mapping.derive == "value":
        return None
    if mapping.source_type == "counter":
        if mapping.derive == "idle_complement" and series.labels.get("mode") != "idle":
            return None
        return "c", ""
    if mapping.derive == "quantile" and series.name.endswith("_bucket"):
        return "b", series.labels.get("le", "")
    if mapping.derive == "rate_of_sum" and series.name.endswith("_sum"):
        return "s", ""
    return None


def snapshot(raw: Iterable[RawSeries], policy: LabelPolicy) -> Snapshot:
    """The cumulative values one scrape holds, reduced to what rates and quantiles need."""
    copies: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], float] = {}
    mapping_of: dict[str, RawSeries] = {}
    for series in raw:
        part = _part(series)
        if part is None or not math.isfinite(series.value):
            continue
        key = (series.mapping.source_name, *part, without_replicas(series.labels))
        copies[key] = max(copies.get(key, -math.inf), series.value)
        mapping_of[series.mapping.source_name] = series
    out: Snapshot = defaultdict(float)
    for (name, part, le, labels), value in copies.items():
        kept = tuple(sorted(policy.project(mapping_of[name].mapping, dict(labels)).items()))
        out[(name, part, le, kept)] += value
        if part == "c" and mapping_of[name].mapping.derive == "idle_complement":
            out[(name, "cpus", "", kept)] += 1.0
    return dict(out)


def is_reset(previous: Snapshot, current: Snapshot) -> bool:
    """Whether any cumulative value went down (the target restarted in between)."""
    return any(
        value < previous[key] * (1 - 1e-12) - 1e-9
        for key, value in current.items()
        if key in previous and key[1] != "cpus"
    )


def encode(snap: Snapshot, policy: LabelPolicy) -> dict[str, Any]:
    """A compact JSON payload: values grouped by label set."""
    groups: dict[tuple[tuple[str, str], ...], dict[str, float]] = defaultdict(dict)
    for (name, part, le, labels), value in snap.items():
        groups[labels][f"{name}|{part}|{le}"] = value
    return {
        "v": PAYLOAD_VERSION,
        "policy": policy.fingerprint(),
        "groups": [{"labels": dict(k), "values": v} for k, v in groups.items()],
    }


def decode(payload: Mapping[str, Any], policy: LabelPolicy) -> Snapshot | None:
    """The snapshot in a stored payload, or None when it is from another format or
    label policy (then it cannot be compared with a new reading)."""
    if payload.get("v") != PAYLOAD_VERSION or payload.get("policy") != policy.fingerprint():
        return None
    out: Snapshot = {}
    try:
        for group in payload["groups"]:
            labels = tuple(sorted((str(k), str(v)) for k, v in group["labels"].items()))
            for packed, value in group["values"].items():
                name, part, le = str(packed).split("|")
                out[(name, part, le, labels)] = float(value)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return out


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus's ``histogram_quantile`` over (upper bound, cumulative count) pairs.

    None when there is no ``+Inf`` bucket, fewer than two buckets or no observation.
    """
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    bounds = [b for b, _ in ordered]
    counts: list[float] = []
    for _, count in ordered:  # cumulative counts cannot fall; repair float noise
        counts.append(max(count, counts[-1]) if counts else count)
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, c in enumerate(counts) if c >= rank or i == len(counts) - 1)
    if index == len(counts) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start = bounds[index - 1] if index > 0 else 0.0
    below = counts[index - 1] if index > 0 else 0.0
    inside = counts[index] - below
    if inside <= 0:
        return bounds[index]
    return start + (bounds[index] - start) * (rank - below) / inside


def _scaled(mapping_scale: float, value: float) -> float | None:
    out = value * mapping_scale
    return out if math.isfinite(out) else None


def windowed_rows(
    previous: Snapshot, current: Snapshot, seconds: float, quantiles: Iterable[float]
) -> list[Row]:
    """Canonical rows for the window between two snapshots ``seconds`` apart.

    A key missing from ``previous`` counts from zero (the series appeared in the window:
    client libraries create labelled series on first use). Windows with no observation
    (no request finished, no prefix-cache lookup) yield no row rather than a 0 or NaN.
    """
    if seconds <= 0:
        return []
    rows: list[Row] = []
    buckets: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = defaultdict(
        list
    )
    ratios: dict[tuple[str, str, tuple[tuple[str, str], ...]], dict[str, float]] = defaultdict(dict)
    ratio_labels: dict[tuple[str, str, tuple[tuple[str, str], ...]], dict[str, str]] = {}
    for key, value in current.items():
        name, part, le, labels = key
        source = source_of(name)
        mapping = lookup(source, name) if source else None
        if mapping is None or part == "cpus":
            continue
        delta = max(0.0, value - previous.get(key, 0.0))
        if part == "b":
            bound = math.inf if le in ("+Inf", "Inf", "inf") else float(le)
            buckets[(name, labels)].append((bound, delta))
            continue
        out_labels = canonical_labels(mapping, dict(labels))
        rank = table_rank(mapping.source, name)
        value_out: float | None = None
        if mapping.derive in ("rate", "rate_of_sum"):
            value_out = _scaled(mapping.scale, delta / seconds)
        elif mapping.derive in ("ratio_numerator", "ratio_denominator"):
            side = "num" if mapping.derive == "ratio_numerator" else "den"
            slot = ratios[(mapping.source, mapping.canonical, labels)]
            ratio_labels[(mapping.source, mapping.canonical, labels)] = out_labels
            slot[side] = delta
            if side == "num":
                slot["rank"] = rank
            continue
        elif mapping.derive == "idle_complement":
            cpus = current.get((name, "cpus", "", labels), 0.0)
            if cpus > 0:
                value_out = min(1.0, max(0.0, 1.0 - delta / seconds / cpus))
        if value_out is not None:
            rows.append(Row(mapping.source, rank, mapping.canonical, out_labels, value_out))
    for key, parts in ratios.items():
        if parts.get("den", 0.0) > 0 and "num" in parts:
            value = min(1.0, max(0.0, parts["num"] / parts["den"]))
            rows.append(Row(key[0], int(parts["rank"]), key[1], ratio_labels[key], value))
    for (name, labels), pairs in buckets.items():
        source = source_of(name)
        mapping = lookup(source, name) if source else None
        if mapping is None:
            continue
        out_labels = canonical_labels(mapping, dict(labels))
        rank = table_rank(mapping.source, name)
        for q in quantiles:
            estimate = histogram_quantile(q, pairs)
            if estimate is not None and (scaled := _scaled(mapping.scale, estimate)) is not None:
                rows.append(
                    Row(mapping.source, rank, mapping.canonical,
                        {**out_labels, "quantile": f"{q:g}"}, scaled)
                )  # fmt: skip
    return rows
