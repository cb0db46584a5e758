"""The transport under the time-series store: one SQL dialect, two ways to send it.

``chdb://`` runs ClickHouse in-process (:mod:`.chdb_backend`); ``clickhouse://`` and
``clickhouses://`` talk to a ClickHouse server through clickhouse-connect
(:mod:`.clickhouse_backend`). The store above builds the SQL (from ``sql/clickhouse``)
and never knows which transport carries it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

import pandas as pd


class Backend(Protocol):
    """What the time-series store needs from a transport.

    ``settings`` are ClickHouse query-level settings (``insert_deduplication_token``,
    ``optimize_aggregation_in_order``...), passed the way the transport passes them.
    """

    #: URL with any password removed, fit for logs and ``optiinfra status``.
    display_url: str

    def command(self, sql: str, settings: dict[str, Any] | None = None) -> None:
        """Run one statement that returns nothing (DDL, INSERT ... SELECT, OPTIMIZE)."""

    def query_df(self, sql: str, settings: dict[str, Any] | None = None) -> pd.DataFrame:
        """Run one SELECT and return its result as a frame."""

    def insert_df(
        self, table: str, frame: pd.DataFrame, settings: dict[str, Any] | None = None
    ) -> None:
        """Insert a whole frame in one statement (columns named as the table's)."""

    def hold(self) -> AbstractContextManager[None]:
        """Keep the connection (and, embedded, the inter-process lock) for a block of calls.

        Outside ``hold()`` each call may open and close its own session; inside, calls
        share one. Re-entrant.
        """

    def close(self) -> None:
        """Release everything; the backend may be used again afterwards (it reopens)."""
