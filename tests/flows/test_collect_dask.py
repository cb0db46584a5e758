"""The collection flow on a Dask cluster, chosen by setting, with no change to the tasks.

One local cluster of two worker *processes* serves the module; the flow joins it through
``OPTIINFRA_DASK_ADDRESS``, exactly as a fleet too big for one machine would join a
remote scheduler. Dask's own task stream shows the provider tasks ran on its workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster, get_task_stream

from flows.collect import collect_flow
from optiinfra.runtime import load_runtime

pytestmark = pytest.mark.prefect

PROVIDERS = """version: 1
providers:
  - name: here
    kind: local
  - name: there
    kind: local
    options: {instance: there-host}
"""


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        # Not the process's default client: the runner must find the cluster by address.
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def _stored(config: Path, summary) -> dict[str, set[str]]:
    """provider → the canonical metrics this run stored for it, read from the store."""
    store = load_runtime(config).open_timeseries()
    try:
        return {
            r.provider: set(
                store.recent_samples(since=summary.started_at, provider=r.provider)["metric"]
            )
            for r in summary.results
        }
    finally:
        store.close()


def test_the_setting_runs_the_provider_tasks_on_dask_and_stores_the_same(
    prefect_harness: None,
    dask_client: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "providers.yaml"
    config.write_text(PROVIDERS)

    threaded = collect_flow(config_path=str(config), return_state=True)
    assert threaded.name == "Completed"
    by_threads = threaded.result()

    monkeypatch.setenv("OPTIINFRA_TASK_RUNNER", "dask")
    monkeypatch.setenv("OPTIINFRA_DASK_ADDRESS", dask_client.scheduler.address)
    with get_task_stream(dask_client) as stream:
        on_dask = collect_flow(config_path=str(config), return_state=True)
    assert on_dask.name == "Completed", on_dask.message
    by_dask = on_dask.result()

    # Each provider's collect and write tasks ran on the cluster's worker processes
    # (Dask names a task by its function).
    ran = [str(record["key"]).rsplit("-", 1)[0] for record in stream.data]
    assert sorted(ran) == ["collect_provider"] * 2 + ["write_batch"] * 2

    # ... and the store holds the same as after the threaded run.
    def outcome(summary) -> list[tuple[str, str, int]]:
        return [(r.provider, r.status, r.samples) for r in summary.results]

    assert outcome(by_dask) == outcome(by_threads)
    assert all(samples > 0 for _, _, samples in outcome(by_dask))
    stored_threads, stored_dask = _stored(config, by_threads), _stored(config, by_dask)
    assert stored_dask == stored_threads
    assert {"cpu_utilization_ratio", "memory_used_bytes"} <= stored_dask["there"]


def test_a_local_cluster_started_for_the_run_from_settings(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Threads rather than processes keep this cheap; the worker-process case is above.
    monkeypatch.setenv("OPTIINFRA_TASK_RUNNER", "dask")
    monkeypatch.setenv("OPTIINFRA_DASK_WORKERS", "1")
    monkeypatch.setenv("OPTIINFRA_DASK_PROCESSES", "false")
    config = tmp_path / "providers.yaml"
    config.write_text(PROVIDERS)
    state = collect_flow(config_path=str(config), return_state=True)
    assert state.name == "Completed", state.message
    summary = state.result()
    assert [(r.provider, r.status) for r in summary.results] == [("here", "ok"), ("there", "ok")]
    assert all(r.samples > 0 for r in summary.results)
