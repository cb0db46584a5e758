"""Where the direct scrape keeps its previous readings: the state store, if it can.

The state store is synchronous (SQLAlchemy), so every call runs in a worker thread. A
state store that cannot be opened or written is not a failed collection: the note says
so and every target is read twice instead (``scrape_settle_seconds`` apart).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from optiinfra.errors import OptiInfraError
from optiinfra.store.state import (
    Cursor,
    StateStore,
    load_cursors,
    open_state,
    prune_cursors,
    save_cursors,
)
from providers.base import CollectionContext

Where = StateStore | str | None
Note = Callable[[str], None]
_FAILURES = (OptiInfraError, SQLAlchemyError, OSError, ValueError)


def resolve(cursors: Any, ctx: CollectionContext) -> Where:
    """The store given to the adapter; else ``ctx.extra["state_url"]``; else the state
    URL of the running configuration (settings, then ``providers.yaml``, then default)."""
    if cursors is not ...:
        return cursors  # type: ignore[no-any-return]
    url = ctx.extra.get("state_url")
    if url:
        return str(url)
    from optiinfra.runtime import load_runtime

    try:
        return load_runtime(check_env=False).state_url
    except OptiInfraError:
        from optiinfra.settings import get_settings

        settings = get_settings()
        return settings.state_url or settings.default_state_url()


def _with_store(where: Where, work: Callable[[StateStore], Any]) -> Any:
    if isinstance(where, StateStore):
        return work(where)
    assert isinstance(where, str)
    store = open_state(where)
    try:
        return work(store)
    finally:
        store.close()


async def load(where: Where, provider: str, note: Note) -> dict[str, Cursor]:
    """Stored readings of ``provider``'s targets ({} when none or unavailable)."""
    if where is None:
        return {}
    try:
        found = await asyncio.to_thread(_with_store, where, lambda s: load_cursors(s, provider))
    except _FAILURES as exc:
        note(f"scrape cursors unavailable ({_first_line(exc)}): every target is read twice")
        return {}
    return dict(found)


async def save(
    where: Where, provider: str, cursors: list[Cursor], keep: Iterable[str], note: Note
) -> None:
    """Store this collection's readings and forget targets that left the configuration."""
    if where is None:
        return
    wanted = list(keep)

    def work(store: StateStore) -> None:
        save_cursors(store, provider, cursors)
        prune_cursors(store, provider, wanted)

    try:
        await asyncio.to_thread(_with_store, where, work)
    except _FAILURES as exc:
        note(f"scrape cursors not saved ({_first_line(exc)}): the next collection reads twice")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
