"""load_context reads quality events over the quality window (days), not the recent hour:
a configuration's baseline from yesterday must reach the application agent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.context import ContextWindow, load_context
from optiinfra.config import OptiInfraConfig
from optiinfra.models import QualityEvent
from optiinfra.store.timeseries import open_timeseries

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path):
    opened = open_timeseries(f"chdb://{tmp_path / 'metrics'}")
    opened.ensure_schema()
    yield opened
    opened.close()


def _events(config_id: str, age: timedelta, items: int = 3) -> list[QualityEvent]:
    return [
        QualityEvent(ts=NOW - age, provider="quality", deployment="chat", config_id=config_id,
                     item_id=f"q{k}", exact_match=1.0, f1=1.0)
        for k in range(items)
    ]  # fmt: skip


def test_a_previous_configurations_events_from_yesterday_reach_the_context(store) -> None:
    rows = (
        _events("c0", timedelta(days=20))  # older than the default 14-day quality window
        + _events("c1", timedelta(days=1))  # yesterday's baseline
        + _events("c2", timedelta(minutes=30))  # after the change
    )
    store.write_quality_events(QualityEvent.to_frame(rows))

    ctx = load_context(store, OptiInfraConfig(), now=NOW)
    assert ContextWindow().quality == timedelta(days=14)
    assert sorted(set(ctx.quality["config_id"])) == ["c1", "c2"]
    assert len(ctx.quality) == 6

    narrow = load_context(
        store, OptiInfraConfig(), now=NOW, window=ContextWindow(quality=timedelta(hours=1))
    )
    assert sorted(set(narrow.quality["config_id"])) == ["c2"]
