"""Fixtures shared by the whole suite.

Every test runs with ``OPTIINFRA_HOME`` (and no ``OPTIINFRA_*`` store URL) pointing
into its own temporary directory, so nothing touches ``~/.optiinfra``. Prefect flows
run under one session-wide ``prefect_test_harness`` (its server takes ~10 s to start).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

_STORE_ENV = (
    "OPTIINFRA_HOME",
    "OPTIINFRA_CONFIG",
    "OPTIINFRA_METRICS_URL",
    "OPTIINFRA_STATE_URL",
    "OPTIINFRA_MEMORY_URL",
)


@pytest.fixture(autouse=True)
def optiinfra_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty OPTIINFRA_HOME per test; no store URL inherited from the shell."""
    for name in _STORE_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "optiinfra-home"
    monkeypatch.setenv("OPTIINFRA_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # so a ./providers.yaml of the developer is never picked up
    return home


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server for the session, with flow heartbeats off (they cost
    ~1 s per sync flow run)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=60),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield
