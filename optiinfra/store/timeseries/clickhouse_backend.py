"""The ``clickhouse://`` / ``clickhouses://`` transport: a ClickHouse server over HTTP(S).

The store's SQL is the same as on chDB; this module only carries it with
clickhouse-connect. A server needs no inter-process lock, so :meth:`hold` only makes sure
the connection is up. The client is made lazily (on the first call, or again after
:meth:`close`) and is shared by threads: no HTTP session id is used, so concurrent calls
from several threads are allowed.

URL form::

    clickhouse://[user[:password]@]host[:port]/database[?option=value&...]

``clickhouse`` is HTTP (default port 8123), ``clickhouses`` HTTPS (8443). Options:
``compress`` (true/false or lz4/zstd/gzip/deflate), ``connect_timeout`` and
``send_receive_timeout`` (whole seconds), ``verify`` (TLS certificate check, true/false).
A password missing from the URL is read from ``OPTIINFRA_CLICKHOUSE_PASSWORD``. The
password never appears in :attr:`ClickHouseBackend.display_url` or in any error.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import clickhouse_connect
import pandas as pd
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from optiinfra.errors import StoreError

#: Makes a clickhouse-connect client from ``get_client`` keyword arguments; tests and
#: embedders inject their own (a client with a custom pool, say).
ClientFactory = Callable[..., Client]

_DEFAULT_PORTS = {"clickhouse": 8123, "clickhouses": 8443}
_COMPRESS_METHODS = ("lz4", "zstd", "gzip", "deflate", "br")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ClickHouseCredentials(BaseSettings):
    """Where a password comes from when the URL has none (``OPTIINFRA_CLICKHOUSE_*``)."""

    model_config = SettingsConfigDict(env_prefix="OPTIINFRA_CLICKHOUSE_", extra="ignore")

    password: SecretStr | None = Field(
        default=None,
        description="Password for clickhouse:// store URLs that do not carry one.",
    )


class ClickHouseTarget(BaseModel):
    """A parsed server URL: where to connect, as whom, and how."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    secure: bool = Field(description="HTTPS (clickhouses://) rather than HTTP.")
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    user: str = "default"
    password: SecretStr = SecretStr("")
    database: str = Field(default="default", pattern=r"^[^/\s]+$")
    compress: bool | Literal["lz4", "zstd", "gzip", "deflate", "br"] = True
    connect_timeout: int = Field(default=10, ge=1, description="Whole seconds.")
    send_receive_timeout: int = Field(default=300, ge=1, description="Whole seconds.")
    verify: bool = True

    @property
    def display_url(self) -> str:
        scheme = "clickhouses" if self.secure else "clickhouse"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{self.user}@{host}:{self.port}/{self.database}"

    def client_arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``clickhouse_connect.get_client``."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.user,
            "password": self.password.get_secret_value(),
            "database": self.database,
            "interface": "https" if self.secure else "http",
            "compress": self.compress,
            "connect_timeout": self.connect_timeout,
            "send_receive_timeout": self.send_receive_timeout,
            "verify": self.verify,
            # No HTTP session: a session id makes concurrent calls from two threads an error.
            "autogenerate_session_id": False,
            # Timezone-aware columns come back aware, as chDB returns them.
            "tz_mode": "schema",
            "client_name": "optiinfra",
        }


def parse_clickhouse_url(
    url: str, credentials: ClickHouseCredentials | None = None
) -> ClickHouseTarget:
    """``clickhouse[s]://...`` → :class:`ClickHouseTarget`, or a :class:`StoreError`.

    Errors name the URL with its password removed.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise StoreError(f"bad ClickHouse URL {_scrub_url(url)}: {exc}") from None
    shown = _scrub_url(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise StoreError(
            f"bad ClickHouse URL {shown}: scheme must be clickhouse:// or clickhouses://"
        )
    if not parts.hostname:
        raise StoreError(f"bad ClickHouse URL {shown}: no host")
    database = unquote(parts.path.strip("/")) or "default"
    if "/" in database:
        raise StoreError(f"bad ClickHouse URL {shown}: the path must be one database name")
    password = unquote(parts.password) if parts.password is not None else None
    if password is None:
        from_env = (credentials or ClickHouseCredentials()).password
        password = from_env.get_secret_value() if from_env is not None else ""
    fields: dict[str, Any] = {
        "secure": parts.scheme == "clickhouses",
        "host": parts.hostname,
        "port": port or _DEFAULT_PORTS[parts.scheme],
        "user": unquote(parts.username) if parts.username else "default",
        "password": SecretStr(password),
        "database": database,
    }
    fields.update(_parse_options(parts.query, shown))
    try:
        return ClickHouseTarget(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "url"
        raise StoreError(f"bad ClickHouse URL {shown}: {where}: {first['msg']}") from None


def _parse_options(query: str, shown_url: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, raw in parse_qsl(query, keep_blank_values=True):
        value = raw.strip().lower()
        if name == "compress":
            if value in _TRUE or value in _FALSE:
                options[name] = value in _TRUE
            elif value in _COMPRESS_METHODS:
                options[name] = value
            else:
                raise StoreError(
                    f"bad ClickHouse URL {shown_url}: compress={raw!r}: use true, false "
                    f"or one of {', '.join(_COMPRESS_METHODS)}"
                )
        elif name == "verify":
            if value not in _TRUE + _FALSE:
                raise StoreError(f"bad ClickHouse URL {shown_url}: verify={raw!r}: true or false")
            options[name] = value in _TRUE
        elif name in ("connect_timeout", "send_receive_timeout"):
            if not value.isdigit() or int(value) < 1:
                raise StoreError(
                    f"bad ClickHouse URL {shown_url}: {name}={raw!r}: whole seconds ≥ 1"
                )
            options[name] = int(value)
        else:
            raise StoreError(
                f"bad ClickHouse URL {shown_url}: unknown option {name!r} (valid: compress, "
                "connect_timeout, send_receive_timeout, verify)"
            )
    return options


def _scrub_url(url: str) -> str:
    """The URL with any ``:password@`` part replaced, for messages about malformed URLs."""
    return re.sub(r"(?<=://)([^/@:]*):[^/@]*@", r"\1:***@", url)


class ClickHouseBackend:
    """The :class:`~optiinfra.store.timeseries.backend.Backend` over a ClickHouse server."""

    def __init__(
        self, target: ClickHouseTarget, *, client_factory: ClientFactory | None = None
    ) -> None:
        self.target = target
        self.display_url = target.display_url
        self._client_factory: ClientFactory = client_factory or clickhouse_connect.get_client
        self._client: Client | None = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_url(
        cls, url: str, *, client_factory: ClientFactory | None = None
    ) -> ClickHouseBackend:
        return cls(parse_clickhouse_url(url), client_factory=client_factory)

    def __repr__(self) -> str:
        return f"ClickHouseBackend({self.display_url!r})"

    # -- Backend --------------------------------------------------------------------

    def command(self, sql: str, settings: dict[str, Any] | None = None) -> None:
        statement = _statement(sql)
        with self._errors("run", statement):
            self._connected().command(statement, settings=settings or None)

    def query_df(self, sql: str, settings: dict[str, Any] | None = None) -> pd.DataFrame:
        """The result as a frame, typed as chDB types it; an empty result keeps its columns.

        Over HTTP, ClickHouse sends no block at all for an empty Native result, so the
        client cannot name the columns (ClickHouse issue #55939); then the same query is
        asked again as ``SELECT * FROM (...) LIMIT 0``, which the client answers with
        column names and types, and an empty frame of those columns is returned.
        """
        statement = _statement(sql)
        with self._errors("query", statement):
            client = self._connected()
            frame = client.query_df(statement, settings=settings or None)
            if len(frame.columns) == 0 and len(frame) == 0:
                frame = _empty_frame_like(client, statement, settings)
            return _like_chdb_strings(frame)

    def insert_df(
        self, table: str, frame: pd.DataFrame, settings: dict[str, Any] | None = None
    ) -> None:
        with self._errors("insert into", table):
            self._connected().insert_df(table, frame, settings=settings or None)

    def hold(self) -> AbstractContextManager[None]:
        """Connect (so a dead server shows here), then nothing: a server needs no lock."""
        return self._held()

    def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- internals ------------------------------------------------------------------

    @contextmanager
    def _held(self) -> Iterator[None]:
        with self._errors("connect to", ""):
            self._connected()
        yield

    def _connected(self) -> Client:
        with self._client_lock:
            if self._client is None:
                self._client = self._client_factory(**self.target.client_arguments())
            return self._client

    @contextmanager
    def _errors(self, action: str, subject: str) -> Iterator[None]:
        """clickhouse-connect's exceptions → one-line :class:`StoreError` naming the URL."""
        try:
            yield
        except ClickHouseError as exc:
            message = f"ClickHouse at {self.display_url}: cannot {action}"
            if subject:
                message += f" {_shorten(subject)}"
            raise StoreError(self._without_password(f"{message}: {_cause(exc)}")) from None

    def _without_password(self, text: str) -> str:
        password = self.target.password.get_secret_value()
        return text.replace(password, "***") if password else text


def _empty_frame_like(
    client: Client, statement: str, settings: dict[str, Any] | None
) -> pd.DataFrame:
    """An empty frame with the columns (and dtypes) ``statement`` would return."""
    try:
        probe = client.query(f"SELECT * FROM ({statement}) LIMIT 0", settings=settings or None)
    except ClickHouseError:  # not a SELECT (SHOW, DESCRIBE...): no columns to recover
        return pd.DataFrame()
    columns: dict[str, pd.Series] = {}
    for name, ch_type in zip(probe.column_names, probe.column_types, strict=True):
        dtype: Any = ch_type.np_type
        timezone = getattr(ch_type, "tzinfo", None)
        if str(dtype).startswith("datetime64[") and timezone is not None:
            dtype = pd.DatetimeTZDtype(unit=str(dtype)[len("datetime64[") : -1], tz=timezone)
        try:
            columns[name] = pd.Series([], dtype=dtype)
        except TypeError:
            columns[name] = pd.Series([], dtype=object)
    return pd.DataFrame(columns)


def _like_chdb_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """String columns as chDB returns them: pandas' default ``str`` dtype, or objects with
    ``None`` where the column has NULLs.

    The client's nullable ``string[NA]`` columns behave differently downstream (mapping
    one to dicts builds an Arrow struct column), so both transports hand the store the
    same kind of column.
    """
    for name, dtype in frame.dtypes.items():
        if isinstance(dtype, pd.StringDtype) and dtype.na_value is pd.NA:
            column = frame[name]
            if column.isna().any():
                frame[name] = column.astype(object).where(column.notna(), None)
            else:
                frame[name] = column.astype(str)
    return frame


def _statement(sql: str) -> str:
    """A trailing ``;`` would end up before the ``FORMAT`` clause the client appends."""
    return sql.strip().rstrip(";").rstrip()


def _shorten(text: str, limit: int = 80) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


_SERVER_RESPONSE = re.compile(
    r"server response: (?P<body>.*?)(?: \(version [^)]*\))?(?: \(for url [^)]*\))?$", re.S
)
_ERRNO = re.compile(r"\[Errno -?\d+\] (?P<text>[^\"')]+)")


def _cause(exc: ClickHouseError) -> str:
    """The useful part of a clickhouse-connect error, on one line."""
    text = str(exc)
    server = _SERVER_RESPONSE.search(text)
    if server:
        return " ".join(server["body"].split())
    reason = getattr(exc.__cause__, "reason", None) or exc.__cause__
    name = type(reason).__name__ if reason is not None else ""
    if "NameResolution" in name:
        return "cannot resolve the host name"
    if "ConnectTimeout" in name:
        return "connection timed out"
    errno = _ERRNO.search(text)
    if errno:
        return errno["text"].strip().lower()
    return " ".join(text.split())[:300]
