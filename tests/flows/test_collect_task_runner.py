"""Which task runner the collection flow uses, chosen by ``OPTIINFRA_TASK_RUNNER`` when
a run starts (the Dask runs themselves: test_collect_dask.py)."""

from __future__ import annotations

import importlib.util

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows.collect import SettingsTaskRunner, collect_flow, task_runner_from_settings
from optiinfra.errors import OptiInfraError


def test_threads_by_default() -> None:
    assert type(task_runner_from_settings()) is ThreadPoolTaskRunner


def test_dask_with_a_local_cluster_of_the_configured_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIINFRA_TASK_RUNNER", "Dask")
    monkeypatch.setenv("OPTIINFRA_DASK_WORKERS", "4")
    runner = task_runner_from_settings()
    assert isinstance(runner, DaskTaskRunner) and runner.address is None
    assert runner.cluster_kwargs == {"n_workers": 4, "processes": True, "dashboard_address": ":0"}


def test_dask_joins_a_running_scheduler_by_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIINFRA_TASK_RUNNER", "dask")
    monkeypatch.setenv("OPTIINFRA_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    runner = task_runner_from_settings()
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address == "tcp://10.0.0.5:8786" and runner.cluster_kwargs == {}


def test_a_remote_cluster_is_not_sized_from_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIINFRA_TASK_RUNNER", "dask")
    monkeypatch.setenv("OPTIINFRA_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    monkeypatch.setenv("OPTIINFRA_DASK_WORKERS", "4")
    with pytest.raises(OptiInfraError, match=r"OPTIINFRA_DASK_WORKERS.*tcp://10\.0\.0\.5:8786"):
        task_runner_from_settings()


@pytest.mark.skipif(
    importlib.util.find_spec("prefect_ray") is not None, reason="prefect-ray is installed"
)
def test_ray_without_its_extra_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPTIINFRA_TASK_RUNNER", "ray")
    with pytest.raises(OptiInfraError, match="pip install prefect-ray"):
        task_runner_from_settings()


def test_an_unknown_runner_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIINFRA_TASK_RUNNER", "spark")
    with pytest.raises(OptiInfraError, match=r"OPTIINFRA_TASK_RUNNER: .* 'dask' or 'ray'"):
        task_runner_from_settings()


def test_the_flow_reads_the_setting_when_a_run_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    # The flow was decorated (at import) long before this setting existed.
    assert isinstance(collect_flow.task_runner, SettingsTaskRunner)
    assert type(collect_flow.task_runner.duplicate()) is ThreadPoolTaskRunner
    monkeypatch.setenv("OPTIINFRA_TASK_RUNNER", "dask")
    assert isinstance(collect_flow.task_runner.duplicate(), DaskTaskRunner)
    # An explicit runner still wins.
    pinned = collect_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))
    assert type(pinned.task_runner.duplicate()) is ThreadPoolTaskRunner


@pytest.mark.prefect
@pytest.mark.skipif(
    importlib.util.find_spec("prefect_ray") is not None, reason="prefect-ray is installed"
)
def test_a_run_whose_runner_cannot_start_fails_with_the_reason(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTIINFRA_TASK_RUNNER", "ray")
    state = collect_flow(return_state=True)
    assert state.is_failed()  # not left Running on the server
    error = state.result(raise_on_failure=False)
    assert isinstance(error, OptiInfraError) and "pip install prefect-ray" in error.message
