"""The time-series store, chosen by URL.

``chdb:///abs/path`` runs ClickHouse in-process (embedded, the default);
``clickhouse://[user[:password]@]host[:port]/db`` and ``clickhouses://…`` use a
ClickHouse server through clickhouse-connect. Both run the same SQL (``sql/clickhouse``).

Example::

    store = open_timeseries("chdb:///home/me/.optiinfra/metrics")
    store.ensure_schema()
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from optiinfra.errors import StoreError
from optiinfra.store.timeseries.chdb_backend import ChdbBackend
from optiinfra.store.timeseries.sqlfiles import DEFAULT_SQL_DIR
from optiinfra.store.timeseries.store import RAW_TABLES, TimeSeriesStore

VALID_SCHEMES = ("chdb", "clickhouse", "clickhouses")


def open_timeseries(
    url: str, *, lock_timeout: float = 120.0, sql_dir: Path = DEFAULT_SQL_DIR
) -> TimeSeriesStore:
    """A store for ``url``; nothing is opened until the first call (embedded: per call).

    ``lock_timeout``: how long an embedded store waits for another process to release
    it. ``sql_dir``: the migrations to apply (tests point it at a copy).
    """
    if not isinstance(url, str) or not url.strip():
        raise StoreError(
            "time-series store URL is empty: expected chdb:///absolute/path or "
            "clickhouse://host:8123/db"
        )
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme == "chdb":
        return TimeSeriesStore(
            ChdbBackend.from_url(url, lock_timeout=lock_timeout), sql_dir=sql_dir
        )
    if scheme in ("clickhouse", "clickhouses"):
        from optiinfra.store.timeseries.clickhouse_backend import ClickHouseBackend

        return TimeSeriesStore(ClickHouseBackend.from_url(url), sql_dir=sql_dir)
    shown = _without_password(url)
    raise StoreError(
        f"unsupported time-series store URL {shown!r}: the scheme must be one of "
        f"{', '.join(s + '://' for s in VALID_SCHEMES)} "
        "(e.g. chdb:///home/me/.optiinfra/metrics or clickhouse://host:8123/db)"
    )


def _without_password(url: str) -> str:
    """The URL with any password replaced, for error messages."""
    try:
        parts = urlsplit(url)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            return parts._replace(netloc=netloc).geturl()
    except ValueError:
        return "<unparseable URL>"
    return url


__all__ = ["RAW_TABLES", "VALID_SCHEMES", "ChdbBackend", "TimeSeriesStore", "open_timeseries"]
