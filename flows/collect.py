"""The collection flow: every enabled provider, in parallel, into the time-series store.

One task per provider; a provider that fails or times out never fails the others:
the run ends *Completed* when all succeeded, *Partial* (a Completed state) when some
failed, and *Failed* only when every provider failed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.context import get_run_context
from prefect.events import emit_event
from prefect.futures import as_completed
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from optiinfra.config import OptiInfraConfig, ProviderConfig
from optiinfra.errors import OptiInfraError
from optiinfra.runtime import load_runtime
from optiinfra.store.state import CollectionStatus
from tasks.collect import (
    ProviderResult,
    collect_provider,
    collection_window,
    failed_result,
    finish_collection,
    known_provider_kinds,
    prepare_stores,
    retry_delays,
    write_batch,
)


class CollectionSummary(BaseModel):
    """What one run of the collection flow did, provider by provider."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    metrics_url: str
    results: list[ProviderResult]

    @property
    def status(self) -> CollectionStatus:
        statuses = {r.status for r in self.results}
        if statuses <= {CollectionStatus.OK}:
            return CollectionStatus.OK
        if statuses == {CollectionStatus.FAILED}:
            return CollectionStatus.FAILED
        return CollectionStatus.PARTIAL


def select_providers(config: OptiInfraConfig, names: list[str] | None) -> list[ProviderConfig]:
    """Enabled providers, or exactly the named ones (unknown names are an error)."""
    if not names:
        return config.enabled_providers()
    known = {p.name: p for p in config.providers}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise OptiInfraError(
            f"unknown provider(s) {', '.join(unknown)}; configured: {', '.join(known) or 'none'}"
        )
    return [known[n] for n in names]


@flow(name="collect", log_prints=True)
def collect_flow(
    config_path: str | None = None, providers: list[str] | None = None
) -> State[CollectionSummary]:
    """Collect every enabled provider once, in parallel, and store what they yield."""
    logger = get_run_logger()
    runtime = load_runtime(config_path, known_kinds=known_provider_kinds())
    selected = select_providers(runtime.config, providers)
    lock_timeout = runtime.settings.lock_timeout_seconds
    run_id = str(get_run_context().flow_run.id)
    started = datetime.now(UTC)

    prepare_stores(runtime.metrics_url, runtime.state_url, lock_timeout, runtime.config)
    collections = {
        collect_provider.with_options(
            name=f"collect-{p.name}",
            timeout_seconds=p.timeout,
            retries=p.retries,
            retry_delay_seconds=retry_delays(p.retries),
        ).submit(p, collection_window(p, started)): p
        for p in selected
    }
    results: list[ProviderResult] = []
    writes = []
    for future in as_completed(list(collections)):
        provider = collections[future]
        state = future.wait() or future.state
        if state.is_completed():
            writes.append((provider, write_batch.submit(runtime.metrics_url, future, lock_timeout)))
        else:
            results.append(failed_result(provider, _failure_message(provider, state)))
    for provider, write in writes:
        write_state = write.wait() or write.state
        if write_state.is_completed():
            results.append(write.result())
        else:
            results.append(failed_result(provider, f"write failed: {write_state.message}"))

    finished = datetime.now(UTC)
    finish_collection(
        runtime.metrics_url, runtime.state_url, lock_timeout, run_id, started, finished, results
    )
    summary = CollectionSummary(
        run_id=run_id,
        started_at=started,
        finished_at=finished,
        metrics_url=runtime.metrics_url,
        results=sorted(results, key=lambda r: r.provider),
    )
    _report(summary)
    message = ", ".join(f"{r.provider}: {r.status}" for r in summary.results) or "no providers"
    logger.info("collection %s (%s)", summary.status, message)
    if summary.status is CollectionStatus.FAILED:
        return Failed(message=f"every provider failed: {message}", data=summary)
    if summary.status is CollectionStatus.PARTIAL:
        return Completed(name="Partial", message=message, data=summary)
    return Completed(message=message, data=summary)


def _failure_message(provider: ProviderConfig, state: State) -> str:
    if state.name == "TimedOut":
        return f"timed out after {provider.timeout:g} s (after {provider.retries} retries)"
    return state.message or "collection failed"


def _report(summary: CollectionSummary) -> None:
    """A table artifact in the Prefect UI, and one event per provider for automations."""
    create_table_artifact(
        key="collection-summary",
        table=[
            {
                "provider": r.provider,
                "kind": r.kind,
                "status": r.status,
                "samples": r.samples,
                "instances": r.instances,
                "duration_s": r.duration_seconds,
                "error": r.error or "",
                "notes": "; ".join(r.notes),
            }
            for r in summary.results
        ],
        description=f"Collection run {summary.run_id}: {summary.status}",
    )
    for r in summary.results:
        emit_event(
            event=f"optiinfra.collection.{r.status}",
            resource={"prefect.resource.id": f"optiinfra.provider.{r.provider}"},
            payload={"samples": r.samples, "instances": r.instances, "run_id": summary.run_id},
        )
