"""Collection tasks: collect one provider, write one batch, record the run.

The logic lives in plain functions (:func:`collect_provider_batch`,
:func:`write_provider_batch`) that tests call without Prefect; the ``@task`` wrappers
add retries, timeouts and names. One task per provider, never one per target or
sample (STACK.md: hundreds of task runs per flow swamp a SQLite-backed server).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
from prefect import task
from pydantic import BaseModel, Field

from optiinfra.config import OptiInfraConfig, ProviderConfig
from optiinfra.models import CostRecord, Instance, QualityEvent, Sample
from optiinfra.store.state import CollectionStatus
from providers import CollectionContext, Feature, get_provider_class, provider_kinds

#: Which frame each feature yields, and the columns it must have.
_FEATURE_FRAMES: dict[Feature, tuple[str, tuple[str, ...]]] = {
    Feature.METRICS: ("samples", Sample.COLUMNS),
    Feature.INVENTORY: ("instances", Instance.COLUMNS),
    Feature.COST: ("costs", CostRecord.COLUMNS),
    Feature.QUALITY: ("quality_events", QualityEvent.COLUMNS),
}


@dataclass
class ProviderBatch:
    """What one provider yielded in one run: frames per kind, and what went wrong."""

    provider: str
    kind: str
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    duration_seconds: float = 0.0

    @property
    def status(self) -> CollectionStatus:
        if not self.errors:
            return CollectionStatus.OK
        return CollectionStatus.PARTIAL if self.frames else CollectionStatus.FAILED


class ProviderResult(BaseModel):
    """The outcome of one provider in one collection run (artifact row, state-store row)."""

    provider: str
    kind: str
    status: CollectionStatus
    samples: int = 0
    instances: int = 0
    costs: int = 0
    quality_events: int = 0
    duration_seconds: float = 0.0
    error: str | None = None
    notes: list[str] = Field(default_factory=list)


def retry_delays(retries: int) -> list[float]:
    """Exponential backoff between retries: 2 s, 8 s, 32 s, … (Prefect adds the jitter)."""
    return [2.0 * 4**attempt for attempt in range(retries)]


def known_provider_kinds() -> list[str]:
    """Every provider kind an entry of providers.yaml may name (for validation)."""
    return provider_kinds()


def collection_window(
    provider: ProviderConfig, end: datetime, state_url: str | None = None
) -> CollectionContext:
    """The window one run collects for ``provider``: its interval, ending at ``end``.

    ``state_url`` reaches adapters that keep state between runs (a direct scrape's
    previous counter readings) through ``extra``.
    """
    return CollectionContext(
        start=end - timedelta(seconds=provider.interval),
        end=end,
        tenant=provider.tenant,
        extra={"state_url": state_url} if state_url else {},
    )


async def _collect_async(config: ProviderConfig, ctx: CollectionContext) -> ProviderBatch:
    adapter_cls = get_provider_class(config.kind)
    adapter = adapter_cls(config)
    batch = ProviderBatch(provider=config.name, kind=config.kind)
    wanted = [f for f in _FEATURE_FRAMES if adapter.supports(f)]
    calls = {
        Feature.METRICS: adapter.collect_metrics,
        Feature.INVENTORY: adapter.collect_inventory,
        Feature.COST: adapter.collect_costs,
        Feature.QUALITY: adapter.collect_quality,
    }
    try:
        outcomes = await asyncio.gather(*(calls[f](ctx) for f in wanted), return_exceptions=True)
    finally:
        await adapter.aclose()
    for feature, outcome in zip(wanted, outcomes, strict=True):
        key, columns = _FEATURE_FRAMES[feature]
        if isinstance(outcome, BaseException):
            batch.errors[key] = f"{type(outcome).__name__}: {outcome}"
            continue
        missing = [c for c in columns if c not in outcome.columns]
        if missing:
            batch.errors[key] = f"adapter returned a frame without columns {missing}"
            continue
        batch.frames[key] = outcome[list(columns)]
    batch.notes = list(adapter.notes)
    return batch


async def collect_provider_batch(config: ProviderConfig, ctx: CollectionContext) -> ProviderBatch:
    """Run every collection the provider supports, concurrently; never raises for a
    feature that fails (the batch records it), only when nothing could be collected."""
    started = time.perf_counter()
    batch = await _collect_async(config, ctx)
    batch.duration_seconds = time.perf_counter() - started
    if batch.status is CollectionStatus.FAILED:
        raise ProviderCollectionError(config.name, batch.errors)
    return batch


class ProviderCollectionError(RuntimeError):
    """Nothing could be collected from a provider (raised so Prefect retries it)."""

    def __init__(self, provider: str, errors: dict[str, str]) -> None:
        detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        super().__init__(f"provider {provider!r} collected nothing ({detail})")
        self.provider = provider
        self.errors = errors


def write_provider_batch(
    metrics_url: str, batch: ProviderBatch, lock_timeout: float
) -> ProviderResult:
    """Write a batch's frames to the time-series store (one insert per frame)."""
    from optiinfra.store.timeseries import open_timeseries

    store = open_timeseries(metrics_url, lock_timeout=lock_timeout)
    written: dict[str, int] = {}
    writers = {
        "samples": store.write_samples,
        "instances": store.write_instances,
        "costs": store.write_costs,
        "quality_events": store.write_quality_events,
    }
    try:
        with store.hold():
            for key, frame in batch.frames.items():
                written[key] = writers[key](frame) if len(frame) else 0
    finally:
        store.close()
    error = "; ".join(f"{k}: {v}" for k, v in batch.errors.items()) or None
    return ProviderResult(
        provider=batch.provider,
        kind=batch.kind,
        status=batch.status,
        samples=written.get("samples", 0),
        instances=written.get("instances", 0),
        costs=written.get("costs", 0),
        quality_events=written.get("quality_events", 0),
        duration_seconds=round(batch.duration_seconds, 3),
        error=error,
        notes=batch.notes,
    )


def failed_result(config: ProviderConfig, error: BaseException | str) -> ProviderResult:
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return ProviderResult(
        provider=config.name, kind=config.kind, status=CollectionStatus.FAILED, error=message
    )


@task(name="collect-provider", retries=2, retry_delay_seconds=[2, 8], retry_jitter_factor=0.5)
async def collect_provider(config: ProviderConfig, ctx: CollectionContext) -> ProviderBatch:
    """Collect one provider (retried with backoff and jitter; timeout set per provider).

    Async, so that the per-provider timeout cancels a hung collection at its next
    ``await`` (a sync task in a worker thread cannot be interrupted).
    """
    return await collect_provider_batch(config, ctx)


@task(name="write-batch", retries=2, retry_delay_seconds=[1, 4], retry_jitter_factor=0.5)
def write_batch(metrics_url: str, batch: ProviderBatch, lock_timeout: float) -> ProviderResult:
    """Write one provider's batch; safe to retry (the store deduplicates identical batches)."""
    return write_provider_batch(metrics_url, batch, lock_timeout)


@task(name="prepare-stores")
def prepare_stores(
    metrics_url: str, state_url: str, lock_timeout: float, config: OptiInfraConfig
) -> dict[str, int]:
    """Create or migrate the schemas once per run, before any provider writes, and
    record the configured tenants and providers in the state store."""
    from optiinfra.store.state import open_state
    from optiinfra.store.timeseries import open_timeseries

    ts = open_timeseries(metrics_url, lock_timeout=lock_timeout)
    try:
        ts_version = ts.ensure_schema()
    finally:
        ts.close()
    state = open_state(state_url)
    try:
        state_version = state.schema_version()
        state.sync_config(config)
    finally:
        state.close()
    return {"timeseries": ts_version, "state": state_version}


@task(name="finish-collection")
def finish_collection(
    metrics_url: str,
    state_url: str,
    lock_timeout: float,
    run_id: str,
    started: datetime,
    finished: datetime,
    results: list[ProviderResult],
) -> None:
    """Refresh the dashboard summary and record each provider's outcome."""
    from optiinfra.store.state import CollectionRun, open_state
    from optiinfra.store.timeseries import open_timeseries

    if any(r.samples for r in results):
        ts = open_timeseries(metrics_url, lock_timeout=lock_timeout)
        try:
            ts.refresh_summary()
        finally:
            ts.close()
    state = open_state(state_url)
    try:
        for r in results:
            state.record_collection_run(
                CollectionRun(
                    run_id=run_id,
                    provider=r.provider,
                    started_at=started,
                    finished_at=finished,
                    status=r.status,
                    samples=r.samples,
                    duration_seconds=r.duration_seconds,
                    error=r.error,
                )
            )
    finally:
        state.close()
