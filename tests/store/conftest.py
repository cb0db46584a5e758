"""Fixtures of the time-series store tests.

``ts_url`` is a store URL per test: an embedded chDB directory under ``tmp_path``, and
a fresh database on the ClickHouse HTTP stand-in, so every store test runs on both
transports. Every store call
outside ``hold()`` closes its chDB session, so each test may use its own directory.

``run_python`` runs code in a fresh interpreter (``sys.executable``) with a bounded
wait: chDB allows one process per data directory, so "another process" must be real.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optiinfra.models import Sample
from optiinfra.store.timeseries.clickhouse_backend import ClickHouseBackend
from tests.clickhouse_standin import StandinHandle, start_standin

REPO_ROOT = Path(__file__).resolve().parents[2]

RunPython = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def clickhouse_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinHandle]:
    """One ClickHouse HTTP stand-in (its own process, chDB inside) for the session."""
    with start_standin(tmp_path_factory.mktemp("clickhouse-standin")) as handle:
        yield handle


@pytest.fixture(params=["chdb", "clickhouse"])
def ts_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty time-series store URL: embedded chDB, or a new database on a
    ClickHouse server (the stand-in, reached through the real clickhouse-connect)."""
    if request.param == "chdb":
        return f"chdb://{tmp_path / 'metrics'}"
    handle: StandinHandle = request.getfixturevalue("clickhouse_standin")
    database = f"test_{uuid.uuid4().hex[:12]}"
    backend = ClickHouseBackend.from_url(handle.url)
    try:
        backend.command(f"CREATE DATABASE {database}")
    finally:
        backend.close()
    return f"clickhouse://{handle.host}:{handle.port}/{database}"


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture
def run_python() -> RunPython:
    """``run_python(code, *args, timeout=60)``: run ``code`` in a new interpreter.

    Fails the test (with the child's stderr) when it exits non-zero or overruns.
    """

    def run(code: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=python_env(),
            cwd=REPO_ROOT,
        )
        assert result.returncode == 0, f"child failed ({result.returncode}):\n{result.stderr}"
        return result

    return run


def sample_frame(
    *,
    instances: int = 3,
    minutes: int = 90,
    start: datetime | None = None,
    provider: str = "aws",
    tenant: str = "acme",
    seed: int = 0,
) -> pd.DataFrame:
    """A realistic batch: per instance, GPU utilisation and TTFT at two quantiles."""
    rng = np.random.default_rng(seed)
    start = start or (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    rows = []
    for i in range(instances):
        utilisation = np.clip(0.5 + np.cumsum(rng.normal(0, 0.05, minutes)), 0, 1)
        for m in range(minutes):
            ts = start + timedelta(minutes=m)
            common = {
                "ts": ts,
                "tenant": tenant,
                "provider": provider,
                "region": "us-east-1",
                "instance": f"{provider}-i-{i}",
                "deployment": "llama",
                "engine": "vllm",
            }
            rows.append(
                {
                    **common,
                    "metric": "gpu_utilization_ratio",
                    "value": round(float(utilisation[m]), 3),
                    "labels": {},
                }
            )
            for quantile, scale in (("0.5", 0.1), ("0.95", 0.4)):
                rows.append(
                    {
                        **common,
                        "metric": "ttft_seconds",
                        "value": float(rng.exponential(scale)),
                        "labels": {"quantile": quantile},
                    }
                )
    return pd.DataFrame(rows, columns=list(Sample.COLUMNS))


@pytest.fixture
def make_samples() -> Callable[..., pd.DataFrame]:
    """:func:`sample_frame` as a fixture (test modules do not import conftest)."""
    return sample_frame


@pytest.fixture
def spawn_python() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``spawn_python(code, *args)``: start ``code`` in a new interpreter, not waiting.

    The caller must bound its wait (``communicate(timeout=...)``); children still
    running at the end of the test are killed.
    """
    started: list[subprocess.Popen[str]] = []

    def spawn(code: str, *args: object) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=python_env(),
            cwd=REPO_ROOT,
        )
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()
