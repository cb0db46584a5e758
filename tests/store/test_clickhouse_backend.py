"""The clickhouse:// transport, through the real clickhouse-connect client.

No ClickHouse server installs on these machines, so the client talks HTTP to the
stand-in of tests/clickhouse_standin (ClickHouse's HTTP interface, chDB executing the
SQL) in its own process.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import pandas as pd
import pytest

from optiinfra.errors import StoreError
from optiinfra.models import CostRecord, Instance, QualityEvent, Sample
from optiinfra.store.timeseries import TimeSeriesStore, open_timeseries
from optiinfra.store.timeseries.clickhouse_backend import (
    ClickHouseBackend,
    ClickHouseCredentials,
    parse_clickhouse_url,
)
from tests.clickhouse_standin import StandinHandle, start_standin

PASSWORD = "correct-horse-battery"
WRONG_PASSWORD = "wrong-staple-9431"


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinHandle]:
    with start_standin(tmp_path_factory.mktemp("standin")) as handle:
        yield handle


@pytest.fixture(scope="module")
def locked_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinHandle]:
    """A stand-in that accepts only user ``ops`` with :data:`PASSWORD`."""
    with start_standin(tmp_path_factory.mktemp("locked"), user="ops", password=PASSWORD) as h:
        yield h


@pytest.fixture(autouse=True)
def no_password_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPTIINFRA_CLICKHOUSE_PASSWORD", raising=False)


@pytest.fixture
def backend(standin: StandinHandle) -> Iterator[ClickHouseBackend]:
    store = ClickHouseBackend.from_url(standin.url)
    yield store
    store.close()


def _table() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sample_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(
                ["2026-11-01 00:00:00.125", "2026-11-01 00:01:00", "2026-11-02 12:00:00.5"],
                utc=True,
                format="ISO8601",
            ),
            "value": [0.5, -1e300, 42.0],
            "provider": ["local", "aws", "local"],
            "labels": [{"gpu": "0", "model": "llama"}, {}, {"k": "v=w, x"}],
        }
    )


SAMPLE_DDL = """
CREATE TABLE {table} (
    ts DateTime64(3, 'UTC'),
    value Float64,
    provider LowCardinality(String),
    labels Map(String, String)
) ENGINE = MergeTree ORDER BY (provider, ts)
"""


# -- through the client, against the stand-in ------------------------------------------


def test_command_runs_ddl_that_queries_then_see(backend: ClickHouseBackend) -> None:
    table = _table()
    backend.command(SAMPLE_DDL.format(table=table))
    backend.command(f"ALTER TABLE {table} ADD COLUMN note String DEFAULT ''")

    columns = backend.query_df(
        f"SELECT name, type FROM system.columns WHERE table = '{table}' ORDER BY position"
    )

    assert list(columns["name"]) == ["ts", "value", "provider", "labels", "note"]
    assert list(columns["type"]) == [
        "DateTime64(3, 'UTC')",
        "Float64",
        "LowCardinality(String)",
        "Map(String, String)",
        "String",
    ]


@pytest.mark.parametrize("compress", ["true", "false", "zstd", "gzip"])
def test_insert_df_then_query_df_returns_equal_values(
    standin: StandinHandle, compress: str
) -> None:
    store = ClickHouseBackend.from_url(f"{standin.url}?compress={compress}")
    table = _table()
    store.command(SAMPLE_DDL.format(table=table))
    frame = _sample_frame()

    store.insert_df(table, frame)
    back = store.query_df(f"SELECT ts, value, provider, labels FROM {table} ORDER BY ts")
    store.close()

    assert list(back.columns) == list(frame.columns)
    assert list(back["ts"]) == list(frame["ts"])  # tz-aware UTC, millisecond precision
    assert list(back["value"]) == list(frame["value"])
    assert list(back["provider"]) == list(frame["provider"])
    assert [dict(m) for m in back["labels"]] == list(frame["labels"])


def test_insert_df_is_one_statement_per_frame(backend: ClickHouseBackend) -> None:
    table = _table()
    backend.command(SAMPLE_DDL.format(table=table))
    backend.insert_df(table, _sample_frame())
    backend.command("SYSTEM FLUSH LOGS")

    parts = backend.query_df(
        f"SELECT count() AS parts, sum(rows) AS rows FROM system.parts "
        f"WHERE table = '{table}' AND active"
    )

    assert int(parts["parts"][0]) == 1  # one INSERT → one part
    assert int(parts["rows"][0]) == 3


def test_empty_result_keeps_its_columns_and_types(backend: ClickHouseBackend) -> None:
    """ClickHouse sends no Native block for an empty result; the backend still names columns."""
    table = _table()
    backend.command(SAMPLE_DDL.format(table=table))

    empty = backend.query_df(f"SELECT ts, value, provider FROM {table} ORDER BY ts")

    assert len(empty) == 0
    assert list(empty.columns) == ["ts", "value", "provider"]
    assert str(empty["ts"].dtype) == "datetime64[ms, UTC]"
    assert empty["value"].dtype == "float64"


def test_strings_come_back_as_plain_strings(backend: ClickHouseBackend) -> None:
    frame = backend.query_df(
        "SELECT 'a' AS s, toLowCardinality('{}') AS lc, CAST(NULL AS Nullable(String)) AS missing"
    )

    assert frame["s"].dtype == frame["lc"].dtype == pd.Series(["x"]).dtype
    assert frame["missing"].iloc[0] is None
    # Mapping to dicts keeps dicts (a nullable Arrow string column would build structs).
    assert list(frame["lc"].map(lambda text: {"parsed": text})) == [{"parsed": "{}"}]


def test_query_settings_reach_the_server_for_that_query_only(backend: ClickHouseBackend) -> None:
    setting = "SELECT getSetting('max_block_size') AS v"
    default = int(backend.query_df(setting)["v"][0])

    changed = int(backend.query_df(setting, settings={"max_block_size": 777})["v"][0])
    after = int(backend.query_df(setting)["v"][0])

    assert changed == 777
    assert after == default != 777


def test_unknown_setting_is_refused_and_leaves_nothing_behind(backend: ClickHouseBackend) -> None:
    setting = "SELECT getSetting('max_block_size') AS v"
    default = int(backend.query_df(setting)["v"][0])

    with pytest.raises(StoreError, match="UNKNOWN_SETTING"):
        backend.query_df("SELECT 1", settings={"max_block_size": 321, "no_such_setting_xyz": 1})

    assert int(backend.query_df(setting)["v"][0]) == default


def test_set_statement_lasts_for_its_own_request_only(backend: ClickHouseBackend) -> None:
    """As on a server without an HTTP session (the backend sends no session id)."""
    setting = "SELECT getSetting('max_block_size') AS v"
    default = int(backend.query_df(setting)["v"][0])

    backend.command("SET max_block_size = 555")

    assert int(backend.query_df(setting)["v"][0]) == default


def test_insert_settings_reach_the_server(backend: ClickHouseBackend) -> None:
    """A deduplication token sent twice stores the batch once (the store relies on it)."""
    table = _table()
    backend.command(
        SAMPLE_DDL.format(table=table) + " SETTINGS non_replicated_deduplication_window = 100"
    )
    frame = _sample_frame()

    backend.insert_df(table, frame, settings={"insert_deduplication_token": "batch-1"})
    backend.insert_df(table, frame, settings={"insert_deduplication_token": "batch-1"})
    backend.insert_df(table, frame, settings={"insert_deduplication_token": "batch-2"})

    count = backend.query_df(f"SELECT count() AS n FROM {table}")
    assert int(count["n"][0]) == 2 * len(frame)


def test_command_settings_reach_the_server(backend: ClickHouseBackend) -> None:
    with pytest.raises(StoreError, match=r"TOO_MANY_ROWS|Limit for rows"):
        backend.command(
            f"CREATE TABLE {_table()} ENGINE = Memory AS SELECT number FROM numbers(1000)",
            settings={"max_rows_to_read": 10},
        )


def test_sql_error_is_a_store_error_with_clickhouse_message(backend: ClickHouseBackend) -> None:
    with pytest.raises(StoreError) as caught:
        backend.query_df("SELECT * FROM no_such_table_here")

    message = str(caught.value)
    assert "UNKNOWN_TABLE" in message
    assert "no_such_table_here" in message
    assert backend.display_url in message
    assert "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_syntax_error_in_command_is_a_store_error(backend: ClickHouseBackend) -> None:
    with pytest.raises(StoreError, match="SYNTAX_ERROR"):
        backend.command("CREATE TABLE broken (")


def test_insert_into_missing_table_is_a_store_error(backend: ClickHouseBackend) -> None:
    with pytest.raises(StoreError, match=r"UNKNOWN_TABLE|doesn't exist") as caught:
        backend.insert_df("no_such_table_either", _sample_frame())
    assert "no_such_table_either" in str(caught.value)


def test_close_then_use_again_reconnects(standin: StandinHandle) -> None:
    made: list[dict[str, Any]] = []

    def counting_factory(**kwargs: Any) -> Any:
        made.append(kwargs)
        return clickhouse_connect.get_client(**kwargs)

    store = ClickHouseBackend.from_url(standin.url, client_factory=counting_factory)
    assert made == []  # lazy: nothing connects before the first call

    store.query_df("SELECT 1 AS one")
    store.query_df("SELECT 2 AS two")
    store.close()
    store.close()  # closing twice is harmless
    answer = store.query_df("SELECT 3 AS three")

    assert int(answer["three"][0]) == 3
    assert len(made) == 2
    assert made[0]["autogenerate_session_id"] is False


def test_hold_is_reentrant_and_calls_inside_work(backend: ClickHouseBackend) -> None:
    with backend.hold(), backend.hold():
        backend.command("SELECT 1")
        assert int(backend.query_df("SELECT 41 + 1 AS v")["v"][0]) == 42


def test_threads_share_one_backend(backend: ClickHouseBackend) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for _ in range(5):
                results.append(int(backend.query_df(f"SELECT {n} AS n")["n"][0]))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(results) == sorted([n for n in range(4) for _ in range(5)])


# -- connection failures and secrets -----------------------------------------------------


def test_refused_connection_names_the_url_not_the_password() -> None:
    port = _free_port()
    store = ClickHouseBackend.from_url(f"clickhouse://ops:{WRONG_PASSWORD}@127.0.0.1:{port}/db")

    with pytest.raises(StoreError) as caught:
        store.query_df("SELECT 1")

    message = str(caught.value)
    assert f"clickhouse://ops@127.0.0.1:{port}/db" in message
    assert "refused" in message
    assert WRONG_PASSWORD not in message
    assert "\n" not in message


def test_unknown_host_is_a_store_error() -> None:
    store = ClickHouseBackend.from_url("clickhouse://no-such-host.invalid:8123/default")
    with pytest.raises(StoreError, match=r"no-such-host\.invalid:8123.*resolve"), store.hold():
        pass


def test_wrong_password_is_refused_without_showing_it(locked_standin: StandinHandle) -> None:
    url = f"clickhouse://ops:{WRONG_PASSWORD}@127.0.0.1:{locked_standin.port}/default"
    store = ClickHouseBackend.from_url(url)

    with pytest.raises(StoreError) as caught:
        store.command("SELECT 1")

    message = str(caught.value)
    assert "AUTHENTICATION_FAILED" in message
    assert WRONG_PASSWORD not in message
    assert WRONG_PASSWORD not in store.display_url
    assert WRONG_PASSWORD not in repr(store)


def test_password_in_url_is_used_and_never_shown(locked_standin: StandinHandle) -> None:
    url = f"clickhouse://ops:{PASSWORD}@127.0.0.1:{locked_standin.port}/default"
    store = ClickHouseBackend.from_url(url)

    assert int(store.query_df("SELECT 7 AS v")["v"][0]) == 7
    assert store.display_url == f"clickhouse://ops@127.0.0.1:{locked_standin.port}/default"
    assert PASSWORD not in repr(store)
    with pytest.raises(StoreError) as caught:
        store.query_df("SELECT * FROM missing_after_login")
    assert PASSWORD not in str(caught.value)
    store.close()


def test_password_comes_from_the_environment_when_the_url_has_none(
    locked_standin: StandinHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTIINFRA_CLICKHOUSE_PASSWORD", PASSWORD)
    store = ClickHouseBackend.from_url(f"clickhouse://ops@127.0.0.1:{locked_standin.port}/default")

    assert int(store.query_df("SELECT 8 AS v")["v"][0]) == 8
    assert PASSWORD not in store.display_url
    store.close()


def test_password_in_url_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIINFRA_CLICKHOUSE_PASSWORD", "from-env")
    target = parse_clickhouse_url("clickhouse://u:from%40url@h/db")
    assert target.password.get_secret_value() == "from@url"
    assert "from@url" not in repr(target)


# -- URL parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "clickhouse://db.example:9000/metrics",
            {"interface": "http", "host": "db.example", "port": 9000, "database": "metrics",
             "username": "default"},
        ),
        (
            "clickhouse://reader@db.example",
            {"interface": "http", "port": 8123, "database": "default", "username": "reader"},
        ),
        (
            "clickhouses://reader@db.example/metrics",
            {"interface": "https", "port": 8443, "verify": True},
        ),
        (
            "clickhouses://[::1]/m?compress=false&connect_timeout=3&send_receive_timeout=60"
            "&verify=false",
            {"host": "::1", "compress": False, "connect_timeout": 3,
             "send_receive_timeout": 60, "verify": False},
        ),
        ("clickhouse://h/d?compress=zstd", {"compress": "zstd"}),
    ],
)  # fmt: skip
def test_url_forms(url: str, expected: dict[str, Any]) -> None:
    arguments = parse_clickhouse_url(url, ClickHouseCredentials(password=None)).client_arguments()
    assert {k: arguments[k] for k in expected} == expected


def test_display_url_of_ipv6_and_https() -> None:
    target = parse_clickhouse_url("clickhouses://u:pw-1234@[::1]:9440/m")
    assert target.display_url == "clickhouses://u@[::1]:9440/m"


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://u:pw-1234@h/db", "scheme"),
        ("clickhouse://u:pw-1234@h:99999/db", "Port out of range"),
        ("clickhouse://u:pw-1234@/db", "no host"),
        ("clickhouse://u:pw-1234@h/a/b", "one database"),
        ("clickhouse://u:pw-1234@h/db?colour=blue", "unknown option 'colour'"),
        ("clickhouse://u:pw-1234@h/db?compress=maybe", "compress"),
        ("clickhouse://u:pw-1234@h/db?connect_timeout=0.5", "connect_timeout"),
        ("clickhouse://u:pw-1234@h/db?verify=perhaps", "verify"),
    ],
)
def test_bad_urls_are_one_clear_error_without_the_password(url: str, complaint: str) -> None:
    with pytest.raises(StoreError) as caught:
        ClickHouseBackend.from_url(url)
    message = str(caught.value)
    assert complaint in message
    assert "pw-1234" not in message
    assert "\n" not in message


def test_stand_in_stops_and_its_data_persists(tmp_path: Path) -> None:
    """The stand-in is a real store underneath: a restart on the same path keeps rows."""
    table = _table()
    with start_standin(tmp_path) as first:
        store = ClickHouseBackend.from_url(first.url)
        store.command(SAMPLE_DDL.format(table=table))
        store.insert_df(table, _sample_frame())
        store.close()
    assert first.process.poll() == 0  # SIGTERM → clean exit

    with start_standin(tmp_path) as second:
        store = ClickHouseBackend.from_url(second.url)
        assert int(store.query_df(f"SELECT count() AS n FROM {table}")["n"][0]) == 3
        store.close()


# -- the whole store over the server path ----------------------------------------------


def _fleet_frames() -> dict[str, pd.DataFrame]:
    """A small fleet's batch of each record kind, timed within the raw tables' TTL."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    samples = [
        Sample(
            ts=now - timedelta(minutes=minute),
            provider=provider,
            instance=f"{provider}-{n}",
            engine="vllm",
            metric=metric,
            value=float(minute * 3 + n) / 7,
            labels={"gpu": str(n)} if metric == "gpu_utilization" else {},
        )
        for provider in ("local", "aws")
        for n in range(3)
        for metric in ("gpu_utilization", "queue_depth")
        for minute in range(20)
    ]
    instances = [
        Instance(
            ts=now,
            provider="aws",
            instance=f"aws-{n}",
            instance_type="p4d.24xlarge",
            gpu_model="A100",
            gpu_count=8,
            price_usd_per_hour=32.77 if n else None,
            started_at=now - timedelta(days=n) if n else None,
            labels={"team": "search"},
        )
        for n in range(3)
    ]
    costs = [
        CostRecord(
            period_start=now - timedelta(days=1),
            period_end=now,
            provider="aws",
            service="EC2",
            resource=f"aws-{n}",
            amount=786.48 + n,
        )
        for n in range(3)
    ]
    quality = [
        QualityEvent(
            ts=now - timedelta(minutes=n),
            provider="aws",
            deployment="chat",
            item_id=f"q{n}",
            f1=n / 10 if n % 2 else None,
            latency_seconds=0.25 * n,
        )
        for n in range(5)
    ]
    return {
        "samples": Sample.to_frame(samples),
        "instances": Instance.to_frame(instances),
        "costs": CostRecord.to_frame(costs),
        "quality_events": QualityEvent.to_frame(quality),
    }


def _exercise(store: TimeSeriesStore, batches: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """The store API a collection run and a dashboard use, twice over for idempotency."""
    version = store.ensure_schema()
    assert store.ensure_schema() == version  # idempotent
    for _ in range(2):  # the same batch twice is stored once
        store.write_samples(batches["samples"])
        store.write_instances(batches["instances"])
        store.write_costs(batches["costs"])
        store.write_quality_events(batches["quality_events"])
    store.refresh_summary()
    return {
        "version": store.schema_version(),
        "row_counts": store.row_counts(),
        "summary": store.dashboard_summary(),
        "aws_summary": store.dashboard_summary(provider="aws"),
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if pd.isna(v) else v) if not isinstance(v, dict) else v
             for k, v in row.items()} for row in frame.to_dict("records")]  # fmt: skip


def test_full_store_through_the_server_matches_embedded(
    standin: StandinHandle, tmp_path: Path
) -> None:
    batches = _fleet_frames()
    with open_timeseries(standin.url) as server_store:
        server = _exercise(server_store, batches)
    with open_timeseries(f"chdb://{tmp_path / 'embedded'}") as embedded_store:
        embedded = _exercise(embedded_store, batches)

    assert server["version"] == embedded["version"] >= 1
    assert (
        server["row_counts"]
        == embedded["row_counts"]
        == {
            "samples": len(batches["samples"]),
            "instances": 3,
            "costs": 3,
            "quality_events": 5,
        }
    )
    assert len(server["summary"]) == 2 * 3 * 2  # providers × instances × metrics
    assert list(server["summary"].columns) == list(embedded["summary"].columns)
    assert _records(server["summary"]) == _records(embedded["summary"])
    assert _records(server["aws_summary"]) == _records(embedded["aws_summary"])
