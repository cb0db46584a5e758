"""`optiinfra serve` as a user runs it: a real process against a real Prefect server.

The server is the session's test harness (a real uvicorn process on a loopback port,
so another process can reach it); `optiinfra serve` registers the collection
deployment there, a run triggered through the API completes in the serve process's
flow-run subprocess, the local provider's samples land in the store, and SIGTERM stops
serve cleanly with its schedule paused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

OPTIINFRA = str(Path(sys.executable).with_name("optiinfra"))


@pytest.fixture
def env(optiinfra_home: Path, tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPTIINFRA_"))}
    clean.update(
        OPTIINFRA_HOME=str(optiinfra_home),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        OPTIINFRA_LOCK_TIMEOUT_SECONDS="20",
    )
    return clean


def test_without_a_prefect_api_serve_says_how_to_start_one(env: dict[str, str]) -> None:
    done = subprocess.run([OPTIINFRA, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "prefect server start" in done.stderr and "PREFECT_API_URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_task_runner_setting_is_named_before_serving(env: dict[str, str]) -> None:
    env = {**env, "OPTIINFRA_TASK_RUNNER": "spark"}
    done = subprocess.run([OPTIINFRA, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "OPTIINFRA_TASK_RUNNER" in done.stderr and "'dask'" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_prefect_api_is_named(env: dict[str, str]) -> None:
    env = {**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # discard port: refused
    done = subprocess.run([OPTIINFRA, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "http://127.0.0.1:9/api" in done.stderr and "does not answer" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def served(prefect_harness: None, env: dict[str, str], tmp_path: Path) -> Iterator[dict]:
    """`optiinfra serve` against the harness's server; stopped (SIGKILL) if a test fails."""
    from prefect.settings import PREFECT_API_URL

    env = {
        **env,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        # With SIGINT ignored, as in a background job of a shell script: SIGTERM must
        # still stop it.
        process = subprocess.Popen(
            [OPTIINFRA, "serve"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        yield {"process": process, "log": log}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _registered(name: str, process: subprocess.Popen, log: Path, within: float = 60.0):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + within
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                return client.read_deployment_by_name(name)
            except ObjectNotFound:
                time.sleep(0.5)
    raise AssertionError(f"{name} was not registered within {within} s:\n{log.read_text()}")


@pytest.mark.prefect
def test_serve_runs_the_collection_deployment_and_stops_on_sigterm(
    served: dict, optiinfra_home: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from optiinfra.runtime import load_runtime

    process, log = served["process"], served["log"]
    deployment = _registered("collect/collect", process, log)
    assert deployment.parameters["schedule_interval"] == 900
    banner = log.read_text()
    assert "collect/collect: every 15m" in banner and "Prefect UI: http://" in banner

    started = datetime.now(UTC)
    run = run_deployment("collect/collect", timeout=60, poll_interval=1, as_subflow=False)
    assert run.state is not None and run.state.is_completed(), (run.state, log.read_text())

    # The run, executed by the serve process, stored the local provider's samples and
    # recorded itself in the state store.
    runtime = load_runtime()
    store = runtime.open_timeseries()
    try:
        samples = store.recent_samples(since=started, provider="local")
    finally:
        store.close()
    assert {"cpu_utilization_ratio", "memory_used_bytes"} <= set(samples["metric"])
    state = runtime.open_state()
    try:
        runs = state.last_collection_runs(limit=10)
    finally:
        state.close()
    assert (str(run.id), "local", "ok") in {(r.run_id, r.provider, r.status) for r in runs}

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()
    output = log.read_text()
    assert "stopped; schedules paused" in output and "Traceback" not in output
    with get_client(sync_client=True) as client:
        assert client.read_deployment_by_name("collect/collect").paused
