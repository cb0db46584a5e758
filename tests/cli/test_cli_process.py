"""The `optiinfra` console script as a user runs it: a real process, real stores.

Covers the README's first command (collect into a new embedded store and print what
was stored), `status` from a later process, and bad input: one clear line, a non-zero
exit code, no traceback unless --debug, and existing data left intact.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

OPTIINFRA = str(Path(sys.executable).with_name("optiinfra"))


def run(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [OPTIINFRA, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def env(optiinfra_home: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPTIINFRA_"))}
    clean.update(
        OPTIINFRA_HOME=str(optiinfra_home),
        PREFECT_HOME=str(optiinfra_home.parent / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        OPTIINFRA_LOCK_TIMEOUT_SECONDS="20",
    )
    return clean


def _counts_line(status_out: str) -> str:
    return next(line for line in status_out.splitlines() if line.startswith("time series:"))


def test_collect_once_on_a_fresh_machine_then_status(
    env: dict[str, str], optiinfra_home: Path
) -> None:
    assert not optiinfra_home.exists()
    done = run("collect", "--once", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "collection ok" in done.stdout
    assert "cpu_utilization_ratio" in done.stdout and "memory_total_bytes" in done.stdout
    assert "stored in chdb://" in done.stdout
    assert "Traceback" not in done.stderr

    # A later, separate process finds the data, the schema versions and the run.
    status = run("status", env=env)
    assert status.returncode == 0, status.stderr
    line = _counts_line(status.stdout)
    assert "schema v" in line and "samples 0" not in line
    runs = status.stdout.split("last collections", 1)[1]
    assert "local" in runs and " ok " in runs  # the built-in default provider's run


def test_malformed_config_is_one_clear_line_without_traceback(
    env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "providers.yaml"
    bad.write_text("providers:\n  - name: x\n    kind: local\n   oops: [\n")
    done = run("--config", str(bad), "collect", "--once", env=env)
    assert done.returncode == 2
    assert str(bad) in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    debug = run("--debug", "--config", str(bad), "collect", "--once", env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_wrong_store_url_is_one_clear_line(env: dict[str, str]) -> None:
    env = {**env, "OPTIINFRA_METRICS_URL": "mysql://127.0.0.1/metrics"}
    done = run("collect", "--once", env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "mysql://127.0.0.1/metrics" in done.stderr and "chdb" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def _seed_store(home: Path) -> dict[str, int]:
    """Write a few samples through the store API, from this process, and close it."""
    from datetime import UTC, datetime

    from optiinfra.models import Sample
    from optiinfra.runtime import load_runtime

    store = load_runtime().open_timeseries()
    try:
        store.ensure_schema()
        now = datetime.now(UTC)
        store.write_samples(
            Sample.to_frame(
                [
                    Sample(
                        ts=now,
                        provider="seed",
                        instance=f"i{i}",
                        metric="cpu_utilization_ratio",
                        value=i / 10,
                    )
                    for i in range(5)
                ]
            )
        )
        return store.row_counts()
    finally:
        store.close()


def test_read_only_store_directory_is_a_clear_error_and_keeps_the_data(
    env: dict[str, str], optiinfra_home: Path
) -> None:
    before = _seed_store(optiinfra_home)
    assert before["samples"] == 5
    # Root ignores file modes, so make the directory truly read-only: a read-only bind
    # mount in a private mount namespace, as a read-only volume would be.
    home = optiinfra_home
    script = f'mount --bind -o ro "{home}" "{home}" && exec "{OPTIINFRA}" collect --once'
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert str(optiinfra_home) in done.stderr
    assert "Traceback" not in done.stderr
    assert _seed_store_counts() == before


def _seed_store_counts() -> dict[str, int]:
    from optiinfra.runtime import load_runtime

    store = load_runtime().open_timeseries()
    try:
        return store.row_counts()
    finally:
        store.close()
