"""Pieces shared by the exposition formats: a cheap histogram and the number formats.

Hundreds of simulated servers record events in one process, many times a second, so the
hot path is plain ints and floats: a :class:`Histogram` finds its bucket with
:func:`bisect.bisect_left` over precomputed bounds and adds to a list. Everything that
costs (label strings, number formatting) happens once at construction or on scrape.

Each real server formats numbers its own way, and a scraper that compares text (or a
person reading it) sees the difference, so each format is here by name:

- :func:`go_float` is prometheus_client's own formatter (vLLM, SGLang): ``3.0``,
  ``1.7769301736864786e+09``, ``+Inf``.
- :func:`rust_float` is Rust's ``Display`` for ``f64`` (TGI's metrics-exporter-prometheus):
  shortest round-trip digits, never an exponent, no trailing ``.0`` (``3``, ``0.00015``).
- :func:`go_fixed` is Go's ``%f`` (DCGM exporter's double fields): ``16.365000``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

from prometheus_client.utils import floatToGoString

__all__ = [
    "Histogram",
    "HistogramLines",
    "client_counter",
    "client_family",
    "client_gauge",
    "escape_help",
    "escape_label_value",
    "go_fixed",
    "go_float",
    "label_text",
    "rust_float",
]


def go_float(value: float) -> str:
    """A number as prometheus_client writes it in the text format (``1.0``, ``+Inf``)."""
    return floatToGoString(value)


def rust_float(value: float) -> str:
    """A number as Rust's ``Display`` for ``f64`` writes it (``1``, ``0.5``, ``0.00015``)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def go_fixed(value: float) -> str:
    """A number as Go's ``fmt.Sprintf("%f", v)`` writes it (six decimals)."""
    return f"{value:.6f}"


def escape_label_value(value: str) -> str:
    """Escape a label value the way every Prometheus text writer does."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    """Escape a HELP text (backslash and newline only, as the text format asks)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def label_text(labels: Mapping[str, str] | Iterable[tuple[str, str]], *, sort: bool) -> str:
    """``{a="x",b="y"}`` (or ``""`` without labels). prometheus_client sorts label names;
    the Rust and Go writers keep the order they were given, so the caller says which."""
    pairs = list(labels.items()) if isinstance(labels, Mapping) else list(labels)
    if sort:
        pairs.sort()
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs) + "}"


class Histogram:
    """Bucket counts of one labelled series, with Prometheus ``le`` semantics.

    ``counts[i]`` holds observations ``v <= bounds[i]`` (and ``> bounds[i-1]``); the last
    slot is ``+Inf``. Counts are per bucket, not cumulative, so an observation touches one
    list slot; renderers accumulate.

    >>> h = Histogram([0.1, 1.0]); h.observe(0.5); h.observe(0.1, 3)
    >>> h.counts, h.count, h.sum
    ([3, 1, 0], 4, 0.8)
    """

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds: tuple[float, ...] = tuple(float(b) for b in bounds)
        if any(b >= c for b, c in zip(self.bounds, self.bounds[1:], strict=False)):
            raise ValueError(f"histogram bounds must increase strictly: {self.bounds}")
        self.counts: list[int] = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        """Record ``n`` observations of ``value`` (one bisect, whatever ``n``)."""
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n

    def cumulative(self) -> list[int]:
        """Counts for ``le`` = each bound, then ``+Inf`` (what the text format shows)."""
        total = 0
        out = []
        for c in self.counts:
            total += c
            out.append(total)
        return out


class HistogramLines:
    """The sample lines of one histogram series in the prometheus_client text format.

    Label strings are built once here, so a scrape only formats the numbers. Two layouts
    exist because prometheus_client writes a live registry as buckets, ``_count``,
    ``_sum`` (vLLM), but its multiprocess collector writes ``_sum``, buckets, ``_count``
    (SGLang, which always runs in multiprocess mode).
    """

    __slots__ = ("_bucket_prefixes", "_count_prefix", "_sum_prefix", "hist")

    def __init__(self, name: str, labels: Mapping[str, str], hist: Histogram) -> None:
        self.hist = hist
        les = [go_float(b) for b in hist.bounds] + ["+Inf"]
        self._bucket_prefixes = [
            f"{name}_bucket{label_text({**labels, 'le': le}, sort=True)} " for le in les
        ]
        self._count_prefix = f"{name}_count{label_text(labels, sort=True)} "
        self._sum_prefix = f"{name}_sum{label_text(labels, sort=True)} "

    def _buckets(self) -> list[str]:
        return [
            p + go_float(c)
            for p, c in zip(self._bucket_prefixes, self.hist.cumulative(), strict=True)
        ]

    def live(self) -> list[str]:
        """Buckets, ``_count``, ``_sum``: a prometheus_client registry in one process."""
        h = self.hist
        return [
            *self._buckets(),
            self._count_prefix + go_float(h.count),
            self._sum_prefix + go_float(h.sum),
        ]

    def multiprocess(self) -> list[str]:
        """``_sum``, buckets, ``_count``: prometheus_client's MultiProcessCollector."""
        h = self.hist
        return [
            self._sum_prefix + go_float(h.sum),
            *self._buckets(),
            self._count_prefix + go_float(h.count),
        ]


def client_family(out: list[str], name: str, doc: str, kind: str, lines: Iterable[str]) -> None:
    """Append one family as prometheus_client's ``generate_latest`` writes it."""
    out.append(f"# HELP {name} {escape_help(doc)}")
    out.append(f"# TYPE {name} {kind}")
    out.extend(lines)


def client_counter(
    out: list[str],
    name: str,
    doc: str,
    series: Sequence[tuple[Mapping[str, str], float]],
    created: float | None,
) -> None:
    """A prometheus_client counter: ``name_total`` samples, then (unless ``created`` is
    None, as in multiprocess mode) a separate ``name_created`` gauge family, which is how
    the text format 0.0.4 carries OpenMetrics' created timestamps."""
    client_family(
        out,
        f"{name}_total",
        doc,
        "counter",
        [f"{name}_total{label_text(lab, sort=True)} {go_float(v)}" for lab, v in series],
    )
    if created is not None:
        stamp = go_float(created)
        client_family(
            out,
            f"{name}_created",
            doc,
            "gauge",
            [f"{name}_created{label_text(lab, sort=True)} {stamp}" for lab, _ in series],
        )


def client_gauge(
    out: list[str], name: str, doc: str, series: Sequence[tuple[Mapping[str, str], float]]
) -> None:
    """A prometheus_client gauge family."""
    client_family(
        out,
        name,
        doc,
        "gauge",
        [f"{name}{label_text(lab, sort=True)} {go_float(v)}" for lab, v in series],
    )
