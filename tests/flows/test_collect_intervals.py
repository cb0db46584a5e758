"""Per-provider intervals: one schedule ticks at the shortest interval, and each run
collects only the providers that are due by their own interval (read from the state
store's collection runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.collect import collect_flow, due_providers, effective_interval, last_collected
from optiinfra.config import ProviderConfig
from optiinfra.runtime import load_runtime
from optiinfra.store.state import CollectionRun, CollectionStatus

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TICK = 900.0  # the 15-minute schedule


def provider(name: str, interval: str) -> ProviderConfig:
    return ProviderConfig(name=name, kind="local", interval=interval)


def names(providers: list[ProviderConfig]) -> list[str]:
    return [p.name for p in providers]


def test_an_hourly_provider_waits_while_a_15_minute_one_is_collected_again() -> None:
    quarter, hourly = provider("quarter", "15m"), provider("hourly", "1h")
    last = {"quarter": NOW - timedelta(minutes=15), "hourly": NOW - timedelta(minutes=15)}
    due, waiting = due_providers([quarter, hourly], last, NOW, TICK)
    assert names(due) == ["quarter"] and names(waiting) == ["hourly"]


def test_the_hourly_provider_is_due_on_the_hour_even_if_this_run_started_early() -> None:
    hourly = provider("hourly", "1h")
    # The previous run started 10 s late, this one on time: 59m50s have passed.
    last = {"hourly": NOW - timedelta(minutes=59, seconds=50)}
    assert names(due_providers([hourly], last, NOW, TICK)[0]) == ["hourly"]
    # ... but not three ticks in (45 minutes).
    last = {"hourly": NOW - timedelta(minutes=45, seconds=10)}
    assert names(due_providers([hourly], last, NOW, TICK)[0]) == []


def test_a_provider_never_collected_is_due() -> None:
    assert names(due_providers([provider("new", "1d")], {}, NOW, TICK)[0]) == ["new"]


@pytest.mark.parametrize(
    ("interval", "expected"),
    [(900, 900), (3600, 3600), (86400, 86400), (1200, 900), (1500, 1800), (60, 900)],
)
def test_intervals_are_honoured_to_the_nearest_tick(interval: float, expected: float) -> None:
    assert effective_interval(interval, TICK) == expected


def _record(state_url: str, provider: str, started: datetime, status: str, run: str) -> None:
    from optiinfra.store.state import open_state

    state = open_state(state_url)
    try:
        state.record_collection_run(
            CollectionRun(
                run_id=run,
                provider=provider,
                started_at=started,
                finished_at=started + timedelta(seconds=2),
                status=CollectionStatus(status),
                samples=10,
            )
        )
    finally:
        state.close()


def test_last_collected_counts_successful_collections_only() -> None:
    url = load_runtime().state_url
    _record(url, "hourly", NOW - timedelta(hours=2), "ok", "r1")
    _record(url, "hourly", NOW - timedelta(minutes=20), "partial", "r2")
    _record(url, "hourly", NOW - timedelta(minutes=5), "failed", "r3")  # retried next tick
    _record(url, "other", NOW - timedelta(minutes=1), "ok", "r3")
    assert last_collected(url, ["hourly", "never"]) == {"hourly": NOW - timedelta(minutes=20)}


PROVIDERS = """version: 1
providers:
  - name: quarter
    kind: local
    interval: 15m
  - name: hourly
    kind: local
    interval: 1h
    options: {instance: hourly-host}
  - name: late-hourly
    kind: local
    interval: 1h
    options: {instance: late-host}
"""


@pytest.mark.prefect
def test_a_scheduled_run_collects_only_the_providers_that_are_due(
    prefect_harness: None, tmp_path: Path
) -> None:
    config = tmp_path / "providers.yaml"
    config.write_text(PROVIDERS)
    url = load_runtime(config).state_url
    now = datetime.now(UTC)
    # The previous tick, 15 minutes ago, collected all three; the late-hourly provider's
    # last collection was 59 minutes ago.
    _record(url, "quarter", now - timedelta(minutes=15), "ok", "previous")
    _record(url, "hourly", now - timedelta(minutes=15), "ok", "previous")
    _record(url, "late-hourly", now - timedelta(minutes=59), "ok", "earlier")

    state = collect_flow(config_path=str(config), schedule_interval=TICK, return_state=True)
    assert state.name == "Completed", state.message
    summary = state.result()
    assert [(r.provider, r.status) for r in summary.results] == [
        ("late-hourly", "ok"),
        ("quarter", "ok"),
    ]
    assert summary.skipped == ["hourly"]
    assert all(r.samples > 0 for r in summary.results)

    # At once again: everything was collected within its interval, so nothing is.
    again = collect_flow(config_path=str(config), schedule_interval=TICK, return_state=True)
    assert again.is_completed() and again.message == "no provider due"
    assert again.result().results == [] and len(again.result().skipped) == 3

    # Without a schedule (optiinfra collect --once, a manual run) every provider is.
    manual = collect_flow(config_path=str(config), return_state=True).result()
    assert len(manual.results) == 3 and manual.skipped == []
