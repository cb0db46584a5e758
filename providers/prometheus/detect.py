"""Which mapping table a metric name belongs to, told from its prefix.

Engines name their metrics with a fixed prefix (``vllm:``, ``sglang:``, ``tgi_``) and so
do the exporters (``DCGM_FI_``, ``node_``), so one scrape or one list of names says what
is being served without any configuration. The ``engine`` option narrows the engines
read; GPU and host exporters are always read.

Example::

    >>> source_of("vllm:num_requests_waiting"), source_of("go_goroutines")
    ('vllm', None)
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from optiinfra.metrics import SourceMapping, lookup, mappings

ENGINE_SOURCES: tuple[str, ...] = ("vllm", "sglang", "tgi")
EXPORTER_SOURCES: tuple[str, ...] = ("dcgm", "node_exporter")
#: Prefix → mapping table. ``node_`` is narrowed by the table itself (only mapped names).
PREFIXES: tuple[tuple[str, str], ...] = (
    ("vllm:", "vllm"),
    ("sglang:", "sglang"),
    ("tgi_", "tgi"),
    ("DCGM_FI_", "dcgm"),
    ("node_", "node_exporter"),
)
_SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def source_of(name: str) -> str | None:
    """The table a metric (or sample) name belongs to, by prefix; ``None`` if none."""
    for prefix, source in PREFIXES:
        if name.startswith(prefix):
            return source
    return None


def allowed_sources(engine: str) -> tuple[str, ...]:
    """Tables read for an ``engine`` option value (``auto``: every engine)."""
    engines = ENGINE_SOURCES if engine == "auto" else (engine,)
    return (*engines, *EXPORTER_SOURCES)


def engine_label(source: str) -> str:
    """What a sample's ``engine`` column says for a table: the engine, or empty."""
    return source if source in ENGINE_SOURCES else ""


@cache
def mapping_of(name: str, sources: tuple[str, ...]) -> tuple[str, SourceMapping] | None:
    """(table, mapping) for an exposed sample name, if it is mapped in an allowed table.

    Cached: the same few hundred names come back in every scrape of every target."""
    source = source_of(name)
    if source is None or source not in sources:
        return None
    found = lookup(source, name)
    return None if found is None else (source, found)


@cache
def exposed_names(sources: tuple[str, ...]) -> frozenset[str]:
    """Every name under which a mapped series may appear, in the text format or in
    Prometheus: the declared name, with and without ``_total``, and histogram parts."""
    names: set[str] = set()
    for source in sources:
        for row in mappings(source):
            base = row.source_name
            names.add(base)
            if row.source_type == "counter":
                names.add(base.removesuffix("_total"))
                names.add(base if base.endswith("_total") else base + "_total")
            elif row.source_type in ("histogram", "summary"):
                names.update(base + s for s in _SUFFIXES[1:])
    return frozenset(names)


def detect(names: Iterable[str], sources: Iterable[str]) -> list[str]:
    """The allowed tables that ``names`` contain mapped metrics of, in table order."""
    allowed = tuple(sources)
    found = {m[0] for n in set(names) if (m := mapping_of(n, allowed)) is not None}
    return [s for s in allowed if s in found]


def name_matcher(sources: Iterable[str]) -> str:
    """A PromQL series selector for the metrics of the given tables: engines and DCGM by
    prefix, node_exporter by its few mapped names (it exposes hundreds of others)."""
    chosen = set(sources)
    parts = [f"{p}.+" for p, s in PREFIXES if s in chosen and s != "node_exporter"]
    if "node_exporter" in chosen:
        parts += sorted(exposed_names(("node_exporter",)))
    return '{__name__=~"' + "|".join(parts) + '"}'
