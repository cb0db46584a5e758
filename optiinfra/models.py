"""The records every part of OptiInfra agrees on (DESIGN.md, "Core records").

Collection produces these; the stores persist them. Bulk paths move them as pandas
frames whose columns are exactly the ``*_COLUMNS`` tuples below (one frame per batch,
never one object per row); the pydantic models are for single records at the
boundaries (validation, tests, adapters that build a few rows).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator


def utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Market(StrEnum):
    ON_DEMAND = "on_demand"
    SPOT = "spot"
    RESERVED = "reserved"


class CostSource(StrEnum):
    BILLED = "billed"
    ESTIMATED = "estimated"


class QualityKind(StrEnum):
    PROBE = "probe"
    SAMPLED = "sampled"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    COLUMNS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def to_frame(cls, records: list[Any]) -> pd.DataFrame:
        """Records → a frame with exactly :attr:`COLUMNS`, in that order."""
        rows = [r.model_dump(mode="python") for r in records]
        return pd.DataFrame(rows, columns=list(cls.COLUMNS))


class Sample(_Record):
    """One value of one canonical metric, for one instance, at one time."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "ts", "tenant", "provider", "region", "instance", "deployment", "engine",
        "metric", "value", "labels",
    )  # fmt: skip

    ts: datetime
    tenant: str = "default"
    provider: str
    region: str = ""
    instance: str
    deployment: str = ""
    engine: str = ""
    metric: str = Field(description="Canonical metric name (optiinfra.metrics).")
    value: float
    labels: dict[str, str] = Field(default_factory=dict)

    _utc = field_validator("ts")(classmethod(lambda cls, v: _as_utc(v)))


class Instance(_Record):
    """An instance, node or pod seen by inventory collection at ``ts``."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "ts", "tenant", "provider", "instance", "region", "instance_type", "gpu_model",
        "gpu_count", "market", "price_usd_per_hour", "state", "started_at", "labels",
    )  # fmt: skip

    ts: datetime
    tenant: str = "default"
    provider: str
    instance: str
    region: str = ""
    instance_type: str = ""
    gpu_model: str = ""
    gpu_count: int = 0
    market: Market = Market.ON_DEMAND
    price_usd_per_hour: float | None = None
    state: str = "running"
    started_at: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    _utc = field_validator("ts")(classmethod(lambda cls, v: _as_utc(v)))


class CostRecord(_Record):
    """Money spent (billed) or estimated for one resource over one period."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "period_start", "period_end", "tenant", "provider", "service", "resource",
        "amount", "currency", "source",
    )  # fmt: skip

    period_start: datetime
    period_end: datetime
    tenant: str = "default"
    provider: str
    service: str = ""
    resource: str = ""
    amount: float
    currency: str = "USD"
    source: CostSource = CostSource.BILLED


class QualityEvent(_Record):
    """One scored answer: a golden-set probe or a sampled real interaction."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "ts", "tenant", "provider", "deployment", "config_id", "kind", "item_id",
        "exact_match", "f1", "judge_score", "latency_seconds",
    )  # fmt: skip

    ts: datetime
    tenant: str = "default"
    provider: str = ""
    deployment: str
    config_id: str = ""
    kind: QualityKind = QualityKind.PROBE
    item_id: str = ""
    exact_match: float | None = None
    f1: float | None = None
    judge_score: float | None = None
    latency_seconds: float | None = None
