"""The collect flow under prefect_test_harness, on real embedded stores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest
from prefect.client.orchestration import get_client

from flows.collect import collect_flow
from optiinfra.errors import OptiInfraError
from optiinfra.runtime import load_runtime
from providers import CollectionContext, Feature, Provider, register

pytestmark = pytest.mark.prefect


@register
class _BrokenProvider(Provider):
    """A provider whose API is down: every call fails."""

    kind = "test-broken"
    features = frozenset({Feature.METRICS})
    attempts = 0

    async def collect_metrics(self, ctx: CollectionContext) -> pd.DataFrame:
        type(self).attempts += 1
        raise ConnectionError("connection refused by 127.0.0.1:9")


@register
class _HungProvider(Provider):
    """A provider whose API accepts the connection and never answers."""

    kind = "test-hung"
    features = frozenset({Feature.METRICS})

    async def collect_metrics(self, ctx: CollectionContext) -> pd.DataFrame:
        await asyncio.sleep(120)
        raise AssertionError("the timeout should have cancelled this")


def _write_config(path: Path, providers: str) -> Path:
    path.write_text(f"version: 1\nproviders:\n{providers}")
    return path


LOCAL = "  - name: here\n    kind: local\n"
BROKEN = "  - name: down\n    kind: test-broken\n    retries: 1\n"


def test_collects_local_provider_into_the_store(prefect_harness: None, tmp_path: Path) -> None:
    config = _write_config(tmp_path / "providers.yaml", LOCAL)
    state = collect_flow(config_path=str(config), return_state=True)
    assert state.is_completed() and state.name == "Completed"
    summary = state.result()
    assert [r.provider for r in summary.results] == ["here"]
    assert summary.results[0].status == "ok" and summary.results[0].samples > 0

    runtime = load_runtime(config)
    store = runtime.open_timeseries()
    try:
        stored = store.recent_samples(since=summary.started_at, provider="here")
        counts = store.row_counts()
    finally:
        store.close()
    assert len(stored) == summary.results[0].samples
    assert {"cpu_utilization_ratio", "memory_used_bytes"} <= set(stored["metric"])
    assert counts["instances"] == 1
    cpu = stored[stored["metric"] == "cpu_utilization_ratio"]["value"]
    assert ((cpu >= 0) & (cpu <= 1)).all()


def test_a_failing_provider_makes_the_run_partial_not_failed(
    prefect_harness: None, tmp_path: Path
) -> None:
    config = _write_config(tmp_path / "providers.yaml", LOCAL + BROKEN)
    _BrokenProvider.attempts = 0
    state = collect_flow(config_path=str(config), return_state=True)
    assert _BrokenProvider.attempts == 2  # the first try and its one retry
    assert state.is_completed() and state.name == "Partial"
    summary = state.result()
    by_name = {r.provider: r for r in summary.results}
    assert by_name["here"].status == "ok" and by_name["here"].samples > 0
    assert by_name["down"].status == "failed"
    assert "connection refused" in (by_name["down"].error or "")

    # Each provider's outcome is recorded in the state store, and the run left a table
    # artifact behind for the Prefect UI.
    state_store = load_runtime(config).open_state()
    try:
        runs = state_store.last_collection_runs(limit=10)
    finally:
        state_store.close()
    assert {(r.provider, r.status) for r in runs} == {("here", "ok"), ("down", "failed")}

    async def artifact_rows() -> list:
        async with get_client() as client:
            artifact = await client.read_latest_artifacts()
            return [a for a in artifact if a.key == "collection-summary"]

    artifacts = asyncio.run(artifact_rows())
    assert artifacts and "down" in str(artifacts[0].data)


def test_only_failing_providers_fail_the_run(prefect_harness: None, tmp_path: Path) -> None:
    config = _write_config(tmp_path / "providers.yaml", BROKEN)
    state = collect_flow(config_path=str(config), return_state=True)
    assert state.is_failed()
    assert "every provider failed" in (state.message or "")


def test_unknown_provider_name_is_a_clear_error(prefect_harness: None, tmp_path: Path) -> None:
    config = _write_config(tmp_path / "providers.yaml", LOCAL)
    state = collect_flow(config_path=str(config), providers=["nope"], return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, OptiInfraError) and "nope" in error.message


def test_a_hung_provider_is_cut_off_by_its_timeout(prefect_harness: None, tmp_path: Path) -> None:
    hung = "  - name: stuck\n    kind: test-hung\n    timeout: 1s\n    retries: 0\n"
    config = _write_config(tmp_path / "providers.yaml", LOCAL + hung)
    state = collect_flow(config_path=str(config), return_state=True)
    assert state.name == "Partial"
    by_name = {r.provider: r for r in state.result().results}
    assert by_name["here"].status == "ok"
    assert by_name["stuck"].status == "failed"
    assert "timed out" in (by_name["stuck"].error or "").lower()
