"""``optiinfra sandbox up|status|down`` as a user runs them: real processes, real ports.

``up`` must start the default fleet with its load and print its endpoints; ``down``
must leave no process and no listening port behind.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

OPTIINFRA = str(Path(sys.executable).with_name("optiinfra"))


def run(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [OPTIINFRA, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def env(optiinfra_home: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPTIINFRA_")}
    clean["OPTIINFRA_HOME"] = str(optiinfra_home)
    return clean


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except FileNotFoundError:
        return False


def test_up_starts_the_default_fleet_with_load_and_down_leaves_nothing(
    env: dict[str, str], optiinfra_home: Path
) -> None:
    up = run("sandbox", "up", env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "SANDBOX" in up.stdout
        for name in ("chat-8b-0", "chat-8b-2", "code-3b-0", "rag-8b-0", "legacy-7b-0"):
            assert name in up.stdout
        state = json.loads((optiinfra_home / "sandbox" / "state.json").read_text())
        assert state["sandbox"] is True and state["load"] is True
        assert all(_listening(p) for p in state["ports"])
        # the load reaches the servers: requests arrive within seconds
        deadline = time.monotonic() + 30
        arrived = 0
        while time.monotonic() < deadline and arrived == 0:
            truth = httpx.get(f"{state['control']}/sandbox/truth", timeout=5).json()
            arrived = sum(
                server["arrived"]
                for servers in truth["deployments"].values()
                for server in servers.values()
            )
            time.sleep(0.5)
        assert arrived > 0
        status = run("sandbox", "status", env=env)
        assert status.returncode == 0 and "chat-8b-1" in status.stdout
        again = run("sandbox", "up", env=env)
        assert again.returncode != 0 and "already running" in again.stderr
    finally:
        down = run("sandbox", "down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not _alive(state["pid"])
    assert not any(_listening(p) for p in state["ports"])
    assert not (optiinfra_home / "sandbox" / "state.json").exists()
    assert run("sandbox", "down", env=env).stdout.strip() == "no sandbox is running"
    assert run("sandbox", "status", env=env).returncode == 1


def test_a_bad_fleet_file_is_refused_with_file_line_and_field(
    env: dict[str, str], tmp_path: Path
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "deployments:\n"
        "  - name: chat\n"
        "    model: meta-llama/Llama-3.1-8B-Instruct\n"
        "    gpu: L4\n"
        "    replicsa: 2\n"
    )
    bad = run("sandbox", "up", "--fleet", str(fleet), env=env)
    assert bad.returncode == 2
    assert f"{fleet}:5" in bad.stderr and "replicsa" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (Path(env["OPTIINFRA_HOME"]) / "sandbox" / "state.json").exists()


def test_readme_quickstart_collects_the_sandbox_and_stores_metrics_and_quality(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The README's 'Try it on a simulated fleet': up, config, collect --once, status, down."""
    assert run("sandbox", "up", "--fleet", "healthy", env=env).returncode == 0
    try:
        config = tmp_path / "sandbox.yaml"
        wrote = run("sandbox", "config", str(config), env=env)
        assert wrote.returncode == 0, wrote.stderr
        assert run("validate", str(config), env=env).returncode == 0
        collected = run(
            "--config", str(config), "collect", "--once", "--show", "1000", env=env, timeout=180
        )
        assert collected.returncode == 0, collected.stdout + collected.stderr
        for metric in ("ttft_seconds", "requests_running", "gpu_utilization_ratio"):
            assert metric in collected.stdout
        status = run("--config", str(config), "status", env=env)
        counts = next(line for line in status.stdout.splitlines() if "quality_events" in line)
        assert "quality_events 0" not in counts
        assert "sandbox-quality" in status.stdout
        # One `sandbox` provider collected the inventory of every server, with prices.
        assert "instances 0" not in counts
        lines = collected.stdout.splitlines()
        assert any(line.split()[:3] == ["sandbox", "sandbox", "ok"] for line in lines if line)
    finally:
        assert run("sandbox", "down", env=env).returncode == 0


def test_history_writes_weeks_of_offered_load_that_the_hourly_context_reads(
    env: dict[str, str],
) -> None:
    done = run("sandbox", "history", "--fleet", "diurnal", "--days", "3", env=env)
    assert done.returncode == 0, done.stderr
    assert "wrote 2,304 samples of offered load" in done.stdout  # 72 h x 4 x 8 replicas
    assert "chat-8b" in done.stdout
    again = run("sandbox", "history", "--days", "0", env=env)
    assert again.returncode != 0
    assert "days must be in" in again.stderr and "Traceback" not in again.stderr
    from datetime import UTC, datetime

    from agents.context import load_context
    from optiinfra.runtime import load_runtime

    os.environ["OPTIINFRA_HOME"] = env["OPTIINFRA_HOME"]
    runtime = load_runtime(None)
    store = runtime.open_timeseries()
    try:
        hourly = load_context(store, runtime.config, now=datetime.now(UTC)).hourly
    finally:
        store.close()
    assert set(hourly["deployment"]) == {"chat-8b"}
    assert len(hourly) == 72
    assert (hourly["instances"] == 8).all()
    assert hourly["request_rate"].max() > 2 * hourly["request_rate"].min() > 0
