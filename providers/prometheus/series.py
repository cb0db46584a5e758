"""The shapes the collector's steps pass along, and which labels survive aggregation.

A *raw series* is one mapped sample as a target exposes it; a *row* is one canonical
series ready to become a :class:`~optiinfra.models.Sample`. Rows carry the position of
the table row that fed them (``rank``) so that, when two source names feed the same
canonical series (an old and a new vLLM name, a counter and the engine's own gauge),
the earlier row of the table wins, whichever way the value was computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from optiinfra.metrics import RANK_LABELS, REPLICA_RANK_LABELS, SourceMapping, mappings

#: Rank labels that tell independent engines apart (data parallelism): aggregated the way
#: the table says. The other rank labels are copies (:data:`REPLICA_RANK_LABELS`).
PARTITION_RANK_LABELS: tuple[str, ...] = tuple(
    label for label in RANK_LABELS if label not in REPLICA_RANK_LABELS
)


@dataclass(frozen=True, slots=True)
class RawSeries:
    """One exposed sample of a mapped metric: ``vllm:e2e_request_latency_seconds_bucket``."""

    source: str
    mapping: SourceMapping
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Row:
    """One canonical series: labels are canonical (renamed), value in canonical units."""

    source: str
    rank: int
    canonical: str
    labels: dict[str, str] = field(hash=False)
    value: float


@cache
def table_rank(source: str, source_name: str) -> int:
    """Position of ``source_name`` in its table (earlier rows win)."""
    for index, row in enumerate(mappings(source)):
        if row.source_name == source_name:
            return index
    raise KeyError(f"{source}: {source_name} is not in the table")


@dataclass(frozen=True)
class LabelPolicy:
    """Which labels an aggregated series keeps: the deployment label, the configured
    ``keep_labels``, the labels the table renames, and (PromQL) ``instance``. Series
    whose table says ``none`` (one per GPU) keep every label."""

    deployment_label: str = "model_name"
    keep: tuple[str, ...] = ()

    def kept_names(self, mapping: SourceMapping, *, renamed: bool = False) -> frozenset[str]:
        table = mapping.labels.values() if renamed else mapping.labels.keys()
        return frozenset({self.deployment_label, *self.keep, *table})

    def project(self, mapping: SourceMapping, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels of one raw series that survive (raw names; ``le`` never does)."""
        if mapping.rank_aggregation == "none":
            return {k: v for k, v in labels.items() if k not in ("le", "__name__")}
        kept = self.kept_names(mapping)
        return {k: v for k, v in labels.items() if k in kept}

    def fingerprint(self) -> str:
        """Changes when the kept labels change, so stored readings are not mixed up."""
        return "|".join((self.deployment_label, *sorted(self.keep)))


def without_replicas(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Labels minus the replica ranks, as a sortable key."""
    return tuple(sorted((k, v) for k, v in labels.items() if k not in REPLICA_RANK_LABELS))
