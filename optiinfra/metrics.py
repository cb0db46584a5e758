"""The canonical metric vocabulary and the mapping of every source onto it.

Agents and dashboards only ever see canonical names (``requests_waiting``,
``gpu_power_watts``, ``ttft_seconds{quantile}``); engine- and exporter-specific names stay
in the mapping tables under ``optiinfra/metricmaps/`` (one CSV per source), which this
module loads, validates and serves. The tables are data so that a new engine version is
a CSV edit, and so that the collector can consume them: each row says which canonical
metric a source series feeds and how (``derive``):

``value``              the (scaled) gauge value *is* the canonical value
``rate``               per-second ``rate()`` of a counter, scaled
``rate_of_sum``        per-second rate of a histogram's ``_sum`` (tokens per request → tokens/s)
``quantile``           ``histogram_quantile`` over the buckets, giving label ``quantile``
``ratio_numerator``    numerator of ``rate(a) / rate(b)`` (``ratio_denominator`` is ``b``)
``idle_complement``    ``1 - mean(rate(counter{mode="idle"}))`` (node_exporter CPU)

Only ``value`` rows can be normalised from a single scrape (:func:`normalise_gauges`);
the rest need two scrapes or PromQL and are left to the collector.

Non-finite values: :func:`normalise_value` raises :class:`MetricValueError` for NaN or
±inf, because a caller asking for one value must not get a silent NaN back.
:func:`normalise_gauges` *drops* NaN/±inf series instead — in the Prometheus exposition
format NaN means "no observation yet", which is routine and must not fail a scrape — and
raises :class:`MetricValueError` only for garbage (a non-string name, non-string labels, a
value that is not a real number).

Example::

    >>> lookup("vllm", "vllm:gpu_cache_usage_perc").canonical
    'kv_cache_usage_ratio'
    >>> normalise_gauges("dcgm", [("DCGM_FI_DEV_GPU_UTIL", {"gpu": "0"}, 87.0)])
    [('gpu_utilization_ratio', {'gpu': '0'}, 0.87)]
"""

from __future__ import annotations

import csv
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Literal

from optiinfra.errors import OptiInfraError

Kind = Literal["gauge", "rate", "quantile"]


class MetricValueError(OptiInfraError, ValueError):
    """A metric name, label set or value that cannot be normalised (message names it)."""


@dataclass(frozen=True)
class CanonicalMetric:
    """One name of the vocabulary: what it measures and in which unit."""

    name: str
    unit: str
    kind: Kind
    description: str
    labels: tuple[str, ...] = ()


def _load_vocabulary() -> tuple[CanonicalMetric, ...]:
    text = (resources.files("optiinfra.metricmaps") / "vocabulary.csv").read_text("utf-8")
    metrics: list[CanonicalMetric] = []
    for row in csv.DictReader(text.splitlines()):
        kind = row["kind"]
        if kind not in ("gauge", "rate", "quantile"):
            raise MetricValueError(f"metricmaps/vocabulary.csv: {row['name']}: bad kind {kind!r}")
        labels = tuple(filter(None, row["labels"].split(";")))
        metrics.append(CanonicalMetric(row["name"], row["unit"], kind, row["description"], labels))
    return tuple(metrics)


_VOCABULARY = _load_vocabulary()
CANONICAL: Mapping[str, CanonicalMetric] = MappingProxyType({m.name: m for m in _VOCABULARY})
SOURCES: tuple[str, ...] = ("vllm", "tgi", "sglang", "dcgm", "node_exporter", "nvml", "psutil")

#: Named unit conversions usable in the ``conversion`` column (all linear: a scale).
CONVERSIONS: Mapping[str, float] = {
    "identity": 1.0,
    "percent_to_ratio": 0.01,
    "mib_to_bytes": 1024.0 * 1024.0,
    "mw_to_w": 0.001,
    "mj_to_j": 0.001,
    "mhz_to_hz": 1e6,
    "ms_to_s": 0.001,
}
SOURCE_TYPES = ("gauge", "counter", "histogram", "summary")
RANK_AGGREGATIONS = ("sum", "mean", "max", "none")
#: Which canonical kinds each ``derive`` may feed, and from which source types.
DERIVES: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "value": (("gauge",), ("gauge", "rate")),
    "rate": (("counter",), ("rate", "gauge")),
    "rate_of_sum": (("histogram", "summary"), ("rate",)),
    "quantile": (("histogram", "summary"), ("quantile",)),
    "ratio_numerator": (("counter",), ("gauge",)),
    "ratio_denominator": (("counter",), ("gauge",)),
    "idle_complement": (("counter",), ("gauge",)),
}
#: Labels that tell tensor/pipeline/data-parallel ranks (or engines) of one server apart.
RANK_LABELS: tuple[str, ...] = ("tp_rank", "pp_rank", "dp_rank", "moe_ep_rank", "engine")
#: Of those, the ranks that report *copies* of one scheduler's state (tensor, pipeline and
#: expert-parallel ranks of one batch): one copy is taken (max), never their sum. The
#: others (``dp_rank``, vLLM's ``engine``) are independent engines, combined as the
#: table's ``rank_aggregation`` says.
REPLICA_RANK_LABELS: tuple[str, ...] = ("tp_rank", "pp_rank", "moe_ep_rank")
_COLUMNS = (
    "source_name", "canonical", "source_type", "conversion", "labels",
    "rank_aggregation", "derive", "deprecated", "note",
)  # fmt: skip
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


@dataclass(frozen=True)
class SourceMapping:
    """One row of a mapping table: how one source series becomes a canonical one.

    ``scale`` multiplies the source value into the canonical unit (``conversion`` names
    it); ``labels`` renames source labels (others pass through unchanged);
    ``rank_aggregation`` says how series that differ only by :data:`RANK_LABELS` combine.
    """

    source: str
    source_name: str
    canonical: str
    source_type: str
    scale: float
    conversion: str = "identity"
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    rank_aggregation: str = "none"
    derive: str = "value"
    deprecated: bool = False
    note: str = ""


def _check_source(source: object) -> str:
    if not isinstance(source, str) or source not in SOURCES:
        raise ValueError(f"unknown metric source {source!r}; valid sources: {', '.join(SOURCES)}")
    return source


def _parse_row(source: str, where: str, row: dict[str, str | None]) -> SourceMapping:
    def bad(column: str, message: str) -> MetricValueError:
        return MetricValueError(f"{where}: column {column!r}: {message}")

    missing = [c for c in _COLUMNS if row.get(c) is None]
    if missing:
        raise bad(missing[0], "missing value")
    values = {c: (row[c] or "").strip() for c in _COLUMNS}
    canonical, conversion = values["canonical"], values["conversion"]
    if canonical not in CANONICAL:
        raise bad("canonical", f"{canonical!r} is not a canonical metric")
    if conversion in CONVERSIONS:
        scale = CONVERSIONS[conversion]
    else:
        try:
            scale = float(conversion)
        except ValueError:
            raise bad("conversion", f"{conversion!r} is neither a number nor one of "
                      f"{', '.join(CONVERSIONS)}") from None  # fmt: skip
        if not math.isfinite(scale) or scale == 0:
            raise bad("conversion", f"scale {conversion!r} must be finite and non-zero")
    source_type, derive = values["source_type"], values["derive"]
    if source_type not in SOURCE_TYPES:
        raise bad("source_type", f"{source_type!r} not in {SOURCE_TYPES}")
    if derive not in DERIVES:
        raise bad("derive", f"{derive!r} not in {tuple(DERIVES)}")
    from_types, to_kinds = DERIVES[derive]
    if source_type not in from_types or CANONICAL[canonical].kind not in to_kinds:
        raise bad("derive", f"{derive!r} cannot turn a {source_type} into a "
                  f"{CANONICAL[canonical].kind} ({canonical})")  # fmt: skip
    if values["rank_aggregation"] not in RANK_AGGREGATIONS:
        raise bad("rank_aggregation", f"{values['rank_aggregation']!r} not in {RANK_AGGREGATIONS}")
    if values["deprecated"] not in ("true", "false"):
        raise bad("deprecated", f"{values['deprecated']!r} is not true or false")
    labels: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in values["labels"].split(";"))):
        src, sep, dst = pair.partition("->")
        if not sep or not src.strip() or not dst.strip():
            raise bad("labels", f"{pair!r} is not of the form source->canonical")
        labels[src.strip()] = dst.strip()
    return SourceMapping(
        source=source,
        source_name=values["source_name"],
        canonical=canonical,
        source_type=source_type,
        scale=scale,
        conversion=conversion,
        labels=labels,
        rank_aggregation=values["rank_aggregation"],
        derive=derive,
        deprecated=values["deprecated"] == "true",
        note=values["note"],
    )


def parse_table(source: str, text: str, filename: str = "<table>") -> list[SourceMapping]:
    """Parse one mapping CSV; any bad row raises :class:`MetricValueError` naming file:line."""
    reader = csv.DictReader(text.splitlines())
    if tuple(reader.fieldnames or ()) != _COLUMNS:
        raise MetricValueError(f"{filename}: header must be {','.join(_COLUMNS)}")
    rows: list[SourceMapping] = []
    seen: set[str] = set()
    for row in reader:
        where = f"{filename}:{reader.line_num}"
        mapping = _parse_row(source, where, row)
        if not mapping.source_name or mapping.source_name in seen:
            raise MetricValueError(
                f"{where}: source_name {mapping.source_name!r} empty or repeated"
            )
        seen.add(mapping.source_name)
        rows.append(mapping)
    return rows


@cache
def _table(source: str) -> tuple[SourceMapping, ...]:
    path = resources.files("optiinfra.metricmaps") / f"{source}.csv"
    return tuple(parse_table(source, path.read_text(encoding="utf-8"), f"metricmaps/{source}.csv"))


@cache
def _index(source: str) -> dict[str, SourceMapping]:
    return {m.source_name: m for m in _table(source)}


def mappings(source: str) -> list[SourceMapping]:
    """Every row of ``source``'s table, in file order (earlier rows are preferred)."""
    return list(_table(_check_source(source)))


def lookup(source: str, source_name: str) -> SourceMapping | None:
    """The mapping for one exposed series name, or ``None`` for names we do not map.

    Accepts the exposed forms as well as the declared one: a counter with or without
    ``_total``, a histogram's ``_bucket``/``_sum``/``_count`` series.
    """
    index = _index(_check_source(source))
    if not isinstance(source_name, str):
        raise MetricValueError(f"{source} metric name must be a string, got {source_name!r}")
    if (found := index.get(source_name)) is not None:
        return found
    if source_name.endswith("_total"):
        found = index.get(source_name.removesuffix("_total"))
    else:
        found = index.get(source_name + "_total")
    if found is not None and found.source_type == "counter":
        return found
    for suffix in ("_bucket", "_sum", "_count"):
        if source_name.endswith(suffix):
            found = index.get(source_name.removesuffix(suffix))
            if found is not None and suffix in _SUFFIXES.get(found.source_type, ()):
                return found
    return None


def normalise_value(mapping: SourceMapping, value: float) -> float:
    """``value`` in the canonical unit. NaN/±inf (in or after conversion) or a non-number
    raise :class:`MetricValueError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MetricValueError(
            f"{mapping.source} metric {mapping.source_name!r}: value {value!r} is not a number"
        )
    number = float(value)
    if not math.isfinite(number):
        raise MetricValueError(
            f"{mapping.source} metric {mapping.source_name!r}: value {number} is not finite"
        )
    converted = number * mapping.scale
    if not math.isfinite(converted):
        raise MetricValueError(
            f"{mapping.source} metric {mapping.source_name!r}: value {number} overflows "
            f"when converted ({mapping.conversion})"
        )
    return converted


def canonical_labels(mapping: SourceMapping, labels: Mapping[str, str]) -> dict[str, str]:
    """Rename labels per ``mapping``; drop ``__name__``; pass the rest through."""
    out: dict[str, str] = {}
    for key, val in labels.items():
        if key != "__name__":
            out[mapping.labels.get(key, key)] = val
    return out


def normalise_gauges(
    source: str, series: Iterable[tuple[str, Mapping[str, str], float]]
) -> list[tuple[str, dict[str, str], float]]:
    """Scraped gauge series ``(source_name, labels, value)`` → canonical ones.

    Unknown names and non-``value`` rows (counters, histograms) are skipped, NaN/±inf
    dropped. When two source names feed the same canonical series (an old and a new
    name, or SM_ACTIVE and GR_ENGINE_ACTIVE), the row earlier in the table wins.
    """
    _check_source(source)
    order = {m.source_name: i for i, m in enumerate(_table(source))}
    chosen: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[int, dict[str, str], float]] = {}
    for item in series:
        if not isinstance(item, tuple) or len(item) != 3:
            raise MetricValueError(
                f"{source} series must be (name, labels, value) tuples, got {item!r:.200}"
            )
        name, labels, value = item
        if not isinstance(name, str):
            raise MetricValueError(f"{source} metric name must be a string, got {name!r:.200}")
        if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise MetricValueError(
                f"{source} metric {name!r}: labels must map strings to strings, got {labels!r:.200}"
            )
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise MetricValueError(
                f"{source} metric {name!r}: value {value!r:.200} is not a number"
            )
        mapping = lookup(source, name)
        if mapping is None or mapping.derive != "value":
            continue
        if not math.isfinite(float(value)) or not math.isfinite(float(value) * mapping.scale):
            continue  # "no observation" (NaN) or nonsense beyond float range: dropped
        converted = normalise_value(mapping, value)
        out_labels = canonical_labels(mapping, labels)
        key = (mapping.canonical, tuple(sorted(out_labels.items())))
        rank = order[mapping.source_name]
        if key not in chosen or rank < chosen[key][0]:
            chosen[key] = (rank, out_labels, converted)
    return [(key[0], labels, value) for key, (_, labels, value) in chosen.items()]


def aggregate_ranks(
    source: str, rows: Iterable[tuple[str, dict[str, str], float]]
) -> list[tuple[str, dict[str, str], float]]:
    """Combine canonical series differing only by :data:`RANK_LABELS`.

    Copies from :data:`REPLICA_RANK_LABELS` collapse to one (their max); independent
    engines then combine by the aggregation ``source``'s table declares for that
    canonical metric (sum/mean/max; rows feeding one metric agree, a test checks it);
    ``none`` (one series per GPU) keeps every series.
    """
    how = {m.canonical: m.rank_aggregation for m in mappings(source) if m.derive == "value"}
    copies: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    kept: list[tuple[str, dict[str, str], float]] = []
    for canonical, labels, value in rows:
        if how.get(canonical, "none") == "none":
            kept.append((canonical, labels, value))
            continue
        engine = tuple(sorted((k, v) for k, v in labels.items() if k not in REPLICA_RANK_LABELS))
        key = (canonical, engine)
        copies[key] = max(copies.get(key, value), value)
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
    for (canonical, engine), value in copies.items():
        rest = tuple((k, v) for k, v in engine if k not in RANK_LABELS)
        groups.setdefault((canonical, rest), []).append(value)
    reduce = {"sum": sum, "max": max, "mean": lambda v: sum(v) / len(v)}
    for (canonical, rest), values in groups.items():
        kept.append((canonical, dict(rest), float(reduce[how[canonical]](values))))
    return kept


def is_canonical(name: object) -> bool:
    """Whether ``name`` is in the vocabulary."""
    return isinstance(name, str) and name in CANONICAL


_DOC_HEADER = """# Canonical metrics

Every source maps onto one vocabulary, so agents and dashboards never see
engine-specific names. The vocabulary and the mapping tables below are generated from
`optiinfra/metrics.py` and `optiinfra/metricmaps/*.csv` by
`python -m optiinfra.metrics > docs/metrics.md`; a test fails when they disagree.

*derive* says how a source series feeds its canonical metric: `value` (the scaled gauge
is the value; the only kind normalised from a single scrape), `rate` (per-second rate of
a counter), `rate_of_sum` (rate of a histogram's `_sum`), `quantile`
(`histogram_quantile` over the buckets, label `quantile`), `ratio_numerator` /
`ratio_denominator` (ratio of two counter rates), `idle_complement` (1 − idle rate).
When two rows feed the same canonical series, the earlier row wins. *ranks* says how
series that differ only by a rank label (`tp_rank`, `pp_rank`, `dp_rank`,
`moe_ep_rank`, `engine`) combine; `none` keeps one series per GPU. Labels not renamed
pass through unchanged; GPU series carry `gpu` (index), `uuid` and `model` (GPU product
name), engine series keep the engine's `model_name`. NaN/±inf scraped values are
dropped (Prometheus writes NaN for "no observation"); `normalise_value` raises
`MetricValueError` on them.

The `nvml` rows are read by the `local` provider. Its NVML path has been checked only
against a hand-written NVML stand-in in the tests (no GPU was available where it was
written); on a machine without an NVIDIA driver it records
"no NVIDIA GPU found (reason)" and still reports CPU and memory.
"""


def render_markdown() -> str:
    """docs/metrics.md: the vocabulary, then one mapping table per source."""
    lines = [_DOC_HEADER, "## Vocabulary", "", "| name | unit | kind | labels | description |",
             "|---|---|---|---|---|"]  # fmt: skip
    for m in _VOCABULARY:
        labels = ", ".join(m.labels)
        lines.append(f"| `{m.name}` | {m.unit} | {m.kind} | {labels} | {m.description} |")
    for source in SOURCES:
        lines += ["", f"## {source}", "",
                  "| source name | type | canonical | derive | conversion | labels | ranks | "
                  "deprecated | note |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in mappings(source):
            renames = ", ".join(f"{k}→{v}" for k, v in r.labels.items() if k != v)
            note = r.note.replace("|", "\\|")
            lines.append(
                f"| `{r.source_name}` | {r.source_type} | `{r.canonical}` | {r.derive} | "
                f"{r.conversion} | {renames} | {r.rank_aggregation} | "
                f"{'yes' if r.deprecated else ''} | {note} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
