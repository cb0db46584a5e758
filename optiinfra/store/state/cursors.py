"""Scrape cursors: the last cumulative readings of each direct-scrape target.

A counter or a histogram says nothing from one reading; its rate needs two. Rather than
scrape every target twice per collection, the collector keeps the previous reading of
each (provider, target) here and computes rates over (previous, now]. One row per
target, replaced on every successful collection; rows of targets that left the
configuration are pruned by the collector.

Example::

    store = open_state(url)
    previous = load_cursors(store, "fleet")            # {target: Cursor}
    save_cursors(store, "fleet", [Cursor("10.0.0.5:8000", now, {"v": 1, ...})])
    prune_cursors(store, "fleet", keep=["10.0.0.5:8000"])
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col

from optiinfra.store.state.store import StateStore
from optiinfra.store.state.tables import ScrapeCursor
from optiinfra.store.state.types import utcnow


@dataclass(frozen=True)
class Cursor:
    """One target's cumulative readings at ``scraped_at`` (timezone-aware UTC)."""

    target: str
    scraped_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


def _check(provider: str, cursor: Cursor) -> dict[str, Any]:
    if not provider or not cursor.target:
        raise ValueError("a scrape cursor needs a provider and a target")
    if cursor.scraped_at.tzinfo is None:
        raise ValueError(f"scrape cursor {provider}/{cursor.target}: scraped_at must be UTC-aware")
    _check_finite(cursor.payload, f"{provider}/{cursor.target}")
    return {
        "provider": provider,
        "target": cursor.target,
        "scraped_at": cursor.scraped_at,
        "payload": cursor.payload,
        "updated_at": utcnow(),
    }


def _check_finite(value: Any, where: str) -> None:
    """JSONB refuses NaN/inf (and SQLite's json_valid would too): say where, early."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"scrape cursor {where}: payload holds a non-finite number")
    if isinstance(value, dict):
        for item in value.values():
            _check_finite(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_finite(item, where)


def load_cursors(store: StateStore, provider: str) -> dict[str, Cursor]:
    """Every stored cursor of ``provider``, by target."""
    with store.session(readonly=True) as session:
        rows = session.exec(
            select(ScrapeCursor).where(col(ScrapeCursor.provider) == provider)
        ).scalars()
        return {
            row.target: Cursor(row.target, row.scraped_at, dict(row.payload or {})) for row in rows
        }


def save_cursors(store: StateStore, provider: str, cursors: Iterable[Cursor]) -> int:
    """Insert or replace the cursors of ``provider``'s targets; returns how many."""
    values = [_check(provider, c) for c in cursors]
    if not values:
        return 0
    table = ScrapeCursor.__table__  # type: ignore[attr-defined]
    insert = pg_insert if store.dialect == "postgresql" else sqlite_insert
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=["provider", "target"],
        set_={
            "scraped_at": statement.excluded.scraped_at,
            "payload": statement.excluded.payload,
            "updated_at": statement.excluded.updated_at,
        },
    )
    with store.session() as session:
        session.execute(statement, values)
    return len(values)


def prune_cursors(store: StateStore, provider: str, keep: Iterable[str]) -> int:
    """Delete ``provider``'s cursors of targets not in ``keep``; returns how many."""
    wanted = set(keep)
    with store.session() as session:
        stored = session.exec(
            select(ScrapeCursor.target).where(col(ScrapeCursor.provider) == provider)
        ).scalars()
        stale = [target for target in stored if target not in wanted]
        if stale:
            session.execute(
                delete(ScrapeCursor).where(
                    col(ScrapeCursor.provider) == provider, col(ScrapeCursor.target).in_(stale)
                )
            )
    return len(stale)
