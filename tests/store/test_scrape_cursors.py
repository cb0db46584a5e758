"""Scrape cursors on SQLite and PostgreSQL: upsert, read back, prune, refuse bad payloads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from optiinfra.store.state import (
    Cursor,
    StateStore,
    load_cursors,
    open_state,
    prune_cursors,
    save_cursors,
)
from tests.store.state_fixtures import state_url

__all__ = ["state_url"]

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    opened = open_state(state_url)
    try:
        yield opened
    finally:
        opened.close()


def _payload(value: float) -> dict[str, object]:
    return {
        "v": 1,
        "groups": [{"labels": {"model_name": "m"}, "values": {"vllm:x_total|c|": value}}],
    }


def test_cursors_are_upserted_per_provider_and_target(store: StateStore) -> None:
    assert load_cursors(store, "fleet") == {}
    assert save_cursors(store, "fleet", [Cursor("a:1", T0, _payload(1.0))]) == 1
    save_cursors(store, "other", [Cursor("a:1", T0, _payload(99.0))])
    later = T0 + timedelta(minutes=15)
    save_cursors(
        store, "fleet", [Cursor("a:1", later, _payload(2.5)), Cursor("b:2", later, _payload(3))]
    )
    got = load_cursors(store, "fleet")
    assert set(got) == {"a:1", "b:2"}
    assert got["a:1"].scraped_at == later and got["a:1"].scraped_at.tzinfo is not None
    assert got["a:1"].payload == _payload(2.5)
    assert load_cursors(store, "other")["a:1"].payload == _payload(99.0)
    assert store.row_counts()["scrape_cursors"] == 3


def test_prune_drops_only_targets_that_left_the_provider(store: StateStore) -> None:
    save_cursors(store, "fleet", [Cursor(t, T0, _payload(1.0)) for t in ("a:1", "b:2", "c:3")])
    save_cursors(store, "other", [Cursor("b:2", T0, _payload(1.0))])
    assert prune_cursors(store, "fleet", keep=["a:1"]) == 2
    assert set(load_cursors(store, "fleet")) == {"a:1"}
    assert set(load_cursors(store, "other")) == {"b:2"}
    assert prune_cursors(store, "fleet", keep=["a:1"]) == 0


@pytest.mark.parametrize(
    ("cursor", "message"),
    [
        (Cursor("a:1", T0, {"v": float("nan")}), "non-finite"),
        (Cursor("a:1", T0, {"g": [{"x": float("inf")}]}), "non-finite"),
        (Cursor("a:1", T0.replace(tzinfo=None), {}), "UTC"),
        (Cursor("", T0, {}), "target"),
    ],
)
def test_bad_cursors_are_refused_before_the_database(
    store: StateStore, cursor: Cursor, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        save_cursors(store, "fleet", [cursor])
    assert load_cursors(store, "fleet") == {}
