"""The collection flow: every enabled provider, in parallel, into the time-series store.

One task per provider; a provider that fails or times out never fails the others:
the run ends *Completed* when all succeeded, *Partial* (a Completed state) when some
failed, and *Failed* only when every provider failed.

Two things are decided when a run starts rather than when this module is imported:
where the tasks run (``OPTIINFRA_TASK_RUNNER``: threads, Dask or Ray; see
:class:`SettingsTaskRunner`), and — for a scheduled run, which passes its
``schedule_interval`` — which providers are due (see :func:`due_providers`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.context import get_run_context
from prefect.events import emit_event
from prefect.futures import as_completed
from prefect.states import Completed, Failed, State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from optiinfra.config import OptiInfraConfig, ProviderConfig
from optiinfra.errors import OptiInfraError
from optiinfra.runtime import load_runtime
from optiinfra.settings import Settings, get_settings
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
    #: Providers a scheduled run left out because their own interval had not passed.
    skipped: list[str] = Field(default_factory=list)

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


# ------------------------------------------------------------------ per-provider intervals


def effective_interval(interval: float, schedule_interval: float) -> float:
    """How often a provider is really collected by a schedule that ticks every
    ``schedule_interval`` seconds: its own interval rounded to the nearest tick.

    A provider is due once at most half a tick remains of its interval (see
    :func:`due_providers`), so 15m and 1h providers on a 15m schedule are collected
    every 15m and every hour exactly; a 20m one every 15m, a 25m one every 30m.
    """
    ticks = max(1, math.ceil((interval - schedule_interval / 2) / schedule_interval))
    return ticks * schedule_interval


def due_providers(
    providers: Iterable[ProviderConfig],
    last_collected: Mapping[str, datetime],
    now: datetime,
    schedule_interval: float,
) -> tuple[list[ProviderConfig], list[ProviderConfig]]:
    """Split providers into (due, not yet due) for a run of a schedule that ticks
    every ``schedule_interval`` seconds.

    A provider is due when it has no successful collection yet, or when its last one
    started at least its ``interval`` ago less half a tick. The half tick absorbs the
    jitter of start times (a run scheduled on the hour may start a few seconds earlier
    after the last one than the one before it did), so an hourly provider is collected
    on the hour, not a tick later. A failed collection does not count: the next tick
    tries that provider again.
    """
    slack = timedelta(seconds=schedule_interval / 2)
    due: list[ProviderConfig] = []
    waiting: list[ProviderConfig] = []
    for provider in providers:
        last = last_collected.get(provider.name)
        if last is None or now - last >= timedelta(seconds=provider.interval) - slack:
            due.append(provider)
        else:
            waiting.append(provider)
    return due, waiting


def last_collected(state_url: str, names: Iterable[str]) -> dict[str, datetime]:
    """When each named provider's last successful (ok or partial) collection started,
    from the state store's ``collection_runs``; providers never collected are absent."""
    from optiinfra.store.state import open_state

    state = open_state(state_url)
    try:
        return state.last_successful_collections(names)
    finally:
        state.close()


# ------------------------------------------------------------------------- task runners


def task_runner_from_settings(settings: Settings | None = None) -> TaskRunner[Any]:
    """The task runner ``OPTIINFRA_TASK_RUNNER`` names, configured from the other
    ``OPTIINFRA_DASK_*`` / ``OPTIINFRA_RAY_*`` settings (not yet started).

    Example: ``OPTIINFRA_TASK_RUNNER=dask OPTIINFRA_DASK_WORKERS=4`` gives a
    ``DaskTaskRunner`` that starts a local cluster of four worker processes for each
    flow run; with ``OPTIINFRA_DASK_ADDRESS=tcp://scheduler:8786`` it joins that
    cluster instead.
    """
    settings = settings or get_settings()
    if settings.task_runner == "dask":
        return _dask_task_runner(settings)
    if settings.task_runner == "ray":
        return _ray_task_runner(settings)
    return ThreadPoolTaskRunner()


def _dask_task_runner(settings: Settings) -> TaskRunner[Any]:
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # a dependency of OptiInfra, but an install may lack it
        raise OptiInfraError(
            "OPTIINFRA_TASK_RUNNER=dask needs the prefect-dask package: pip install prefect-dask"
        ) from exc
    if settings.dask_address:
        if settings.dask_workers is not None:
            raise OptiInfraError(
                "OPTIINFRA_DASK_WORKERS sizes a local Dask cluster and cannot be combined "
                f"with OPTIINFRA_DASK_ADDRESS={settings.dask_address}: size that cluster "
                "where its workers are started"
            )
        return DaskTaskRunner(address=settings.dask_address)
    # Any free port for the scheduler's HTTP endpoint: Dask binds one even with the
    # dashboard off (None still means :8787), and two flow runs on one machine must not
    # fight over it.
    cluster_kwargs: dict[str, Any] = {
        "processes": settings.dask_processes,
        "dashboard_address": ":0",
    }
    if settings.dask_workers is not None:
        cluster_kwargs["n_workers"] = settings.dask_workers
    return DaskTaskRunner(cluster_kwargs=cluster_kwargs)


def _ray_task_runner(settings: Settings) -> TaskRunner[Any]:
    try:
        from prefect_ray import RayTaskRunner  # type: ignore[import-not-found]
    except ImportError as exc:  # an optional extra: Ray is large and rarely needed
        raise OptiInfraError(
            "OPTIINFRA_TASK_RUNNER=ray needs the prefect-ray package, which OptiInfra does "
            "not install by default: pip install prefect-ray"
        ) from exc
    return RayTaskRunner(address=settings.ray_address)


class SettingsTaskRunner(TaskRunner[Any]):
    """Stands for the task runner the settings choose when a flow run starts.

    Prefect fixes a flow's task runner when the flow is decorated and, for each run,
    enters that runner's :meth:`duplicate`. This one's duplicate is the runner
    :func:`task_runner_from_settings` builds at that moment, so ``OPTIINFRA_TASK_RUNNER``
    applies however the flow is started — ``optiinfra collect --once``, a served
    deployment, a worker that loads the flow from its entrypoint — and the tasks do not
    change. ``collect_flow.with_options(task_runner=…)`` still overrides it.

    A setting that cannot be honoured (Ray without prefect-ray) must fail the run with
    its message: raised from ``duplicate()`` it would escape before Prefect tracks the
    run and leave it *Running* on the server. So the duplicate is then a runner that
    raises that error at the first task submitted, inside the flow.
    """

    def __init__(self, error: OptiInfraError | None = None) -> None:
        super().__init__()
        self._error = error

    def duplicate(self) -> TaskRunner[Any]:  # type: ignore[override]
        try:
            return task_runner_from_settings()
        except OptiInfraError as exc:
            return SettingsTaskRunner(error=exc)

    def submit(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if self._error is not None:
            raise self._error
        raise RuntimeError(
            "SettingsTaskRunner only chooses a task runner; Prefect runs tasks on its "
            "duplicate(), never on it"
        )


# ------------------------------------------------------------------------------- the flow


@flow(name="collect", log_prints=True, task_runner=SettingsTaskRunner())
def collect_flow(
    config_path: str | None = None,
    providers: list[str] | None = None,
    schedule_interval: float | None = None,
) -> State[CollectionSummary]:
    """Collect every enabled provider once, in parallel, and store what they yield.

    ``schedule_interval`` (seconds) is set by the scheduled deployment to its own
    interval: the run then collects only the providers that are due by their own
    ``interval`` (:func:`due_providers`). Unset, every selected provider is collected.
    """
    logger = get_run_logger()
    runtime = load_runtime(config_path, known_kinds=known_provider_kinds())
    selected = select_providers(runtime.config, providers)
    lock_timeout = runtime.settings.lock_timeout_seconds
    run_id = str(get_run_context().flow_run.id)
    started = datetime.now(UTC)

    skipped: list[str] = []
    if schedule_interval:
        last = last_collected(runtime.state_url, [p.name for p in selected])
        selected, waiting = due_providers(selected, last, started, schedule_interval)
        skipped = sorted(p.name for p in waiting)
        if skipped:
            logger.info("not due yet (collected within their interval): %s", ", ".join(skipped))
        if not selected:
            summary = CollectionSummary(
                run_id=run_id,
                started_at=started,
                finished_at=started,
                metrics_url=runtime.metrics_url,
                results=[],
                skipped=skipped,
            )
            return Completed(message="no provider due", data=summary)

    prepare_stores(runtime.metrics_url, runtime.state_url, lock_timeout, runtime.config)
    collections = {
        collect_provider.with_options(
            name=f"collect-{p.name}",
            timeout_seconds=p.timeout,
            retries=p.retries,
            retry_delay_seconds=retry_delays(p.retries),
        ).submit(p, collection_window(p, started, runtime.state_url)): p
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
        skipped=skipped,
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
                "costs": r.costs,
                "quality_events": r.quality_events,
                "duration_s": r.duration_seconds,
                "error": r.error or "",
                "notes": "; ".join(r.notes),
            }
            for r in summary.results
        ],
        description=f"Collection run {summary.run_id}: {summary.status}"
        + (f" (not due: {', '.join(summary.skipped)})" if summary.skipped else ""),
    )
    for r in summary.results:
        emit_event(
            event=f"optiinfra.collection.{r.status}",
            resource={"prefect.resource.id": f"optiinfra.provider.{r.provider}"},
            payload={
                "samples": r.samples,
                "instances": r.instances,
                "costs": r.costs,
                "quality_events": r.quality_events,
                "run_id": summary.run_id,
            },
        )
