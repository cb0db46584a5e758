"""The migration runner on SQLite and PostgreSQL: apply once, refuse edits, race safely."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, create_engine, inspect
from sqlalchemy import text as sql_text
from sqlalchemy.types import TypeDecorator, TypeEngine

from optiinfra.errors import StoreError
from optiinfra.store.state import STATE_METADATA, STATE_TABLES, open_state
from optiinfra.store.state.engine import parse_state_url
from optiinfra.store.state.migrate import MIGRATIONS_DIR, discover, split_statements
from tests.store.state_fixtures import run_at_once, start_python, state_url

__all__ = ["state_url"]


def _latest_version() -> int:
    return max(m.version for m in discover("sqlite"))


def _migration_rows(url: str) -> list[tuple[int, str, str, str]]:
    engine = create_engine(parse_state_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sql_text("SELECT version, name, checksum, applied_at FROM schema_migrations")
            )
            return sorted(tuple(row) for row in rows)
    finally:
        engine.dispose()


def _copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, target)
    return target


def test_migrate_twice_is_a_no_op_and_the_version_is_recorded(state_url: str) -> None:
    store = open_state(state_url)
    try:
        assert store.schema_version() == _latest_version()
        first = _migration_rows(state_url)
        assert [row[0] for row in first] == [m.version for m in discover(store.dialect)]
        assert store.migrate() == _latest_version()
    finally:
        store.close()
    reopened = open_state(state_url)
    try:
        assert reopened.migrate() == _latest_version()
    finally:
        reopened.close()
    assert _migration_rows(state_url) == first


def test_open_without_migrate_leaves_an_empty_database_alone(state_url: str) -> None:
    store = open_state(state_url, migrate=False)
    try:
        assert store.schema_version() == 0
    finally:
        store.close()


def _family(column_type: TypeEngine[object]) -> str:
    """Coarse type family, so JSON/JSONB or TEXT/VARCHAR count as the same column."""
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    for family, types in (
        ("json", (JSON,)),
        ("boolean", (Boolean,)),
        ("datetime", (DateTime,)),
        ("integer", (Integer,)),
        ("float", (Float,)),
        ("text", (String,)),
    ):
        if isinstance(column_type, types):
            return family
    name = type(column_type).__name__.upper()
    if name in ("JSONB", "JSON"):
        return "json"
    if name in ("REAL", "DOUBLE_PRECISION", "DOUBLE"):
        return "float"
    return name


def test_migrated_schema_matches_the_sqlmodel_tables(state_url: str) -> None:
    open_state(state_url).close()
    engine = create_engine(parse_state_url(state_url))
    try:
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == {*STATE_TABLES, "schema_migrations"}
        assert set(STATE_METADATA.tables) == set(STATE_TABLES)
        for table in STATE_METADATA.sorted_tables:
            reflected = {c["name"]: c for c in inspector.get_columns(table.name)}
            assert list(reflected) == [c.name for c in table.columns], table.name
            for column in table.columns:
                found = reflected[column.name]
                where = f"{table.name}.{column.name}"
                assert _family(found["type"]) == _family(column.type), where
                assert found["nullable"] == column.nullable, where
                if engine.dialect.name == "postgresql" and _family(column.type) == "datetime":
                    assert found["type"].timezone, f"{where} must be TIMESTAMPTZ"
                if engine.dialect.name == "postgresql" and _family(column.type) == "json":
                    assert type(found["type"]).__name__ == "JSONB", where
            primary_key = inspector.get_pk_constraint(table.name)["constrained_columns"]
            assert primary_key == [c.name for c in table.primary_key.columns], table.name
            foreign_keys = {
                (tuple(fk["constrained_columns"]), fk["referred_table"])
                for fk in inspector.get_foreign_keys(table.name)
            }
            expected_fks = {((fk.parent.name,), fk.column.table.name) for fk in table.foreign_keys}
            assert foreign_keys == expected_fks, table.name
            indexes = {
                (ix["name"], tuple(ix["column_names"])) for ix in inspector.get_indexes(table.name)
            }
            expected_indexes = {
                (ix.name, tuple(c.name for c in ix.columns)) for ix in table.indexes
            }
            assert expected_indexes <= indexes, table.name
            uniques = {
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table.name)
            }
            expected_uniques = {
                (c.name, tuple(col.name for col in c.columns))
                for c in table.constraints
                if type(c).__name__ == "UniqueConstraint"
            }
            assert expected_uniques == uniques, table.name
    finally:
        engine.dispose()


def test_an_edited_migration_is_refused_naming_the_file(state_url: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    store = open_state(state_url, migrations_dir=directory)
    applied = discover(store.dialect, directory)[0]
    store.close()
    applied.path.write_text(applied.sql + "\n-- an innocent-looking edit\n")
    with pytest.raises(StoreError, match=re.escape(str(applied.path))):
        open_state(state_url, migrations_dir=directory)


def test_a_new_migration_is_applied_once(state_url: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    open_state(state_url, migrations_dir=directory).close()
    nxt = _latest_version() + 1
    (directory / f"{nxt:04d}_tenant_note.sql").write_text(
        "-- portable: one file for both backends\n"
        "ALTER TABLE tenants ADD COLUMN note TEXT;\n"
        "INSERT INTO audit_events (id, at, tenant, actor, action, subject, detail)\n"
        "VALUES ('m1', CURRENT_TIMESTAMP, 'default', 'migration', 'a;b', '50%', '{}');\n"
    )
    store = open_state(state_url, migrations_dir=directory)
    try:
        assert store.schema_version() == nxt
        assert store.migrate() == nxt
        assert store.row_counts()["audit_events"] == 1
    finally:
        store.close()
    assert [row[0] for row in _migration_rows(state_url)][-1] == nxt


def test_a_failing_migration_applies_nothing(state_url: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    open_state(state_url, migrations_dir=directory).close()
    nxt = _latest_version() + 1
    broken = directory / f"{nxt:04d}_broken.sql"
    broken.write_text(
        "CREATE TABLE half_done (id TEXT PRIMARY KEY);\nSELECT * FROM no_such_table;\n"
    )
    with pytest.raises(StoreError, match=re.escape(str(broken))):
        open_state(state_url, migrations_dir=directory)
    engine = create_engine(parse_state_url(state_url))
    try:
        assert "half_done" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    store = open_state(state_url)  # the real files still open it
    try:
        assert store.schema_version() == _latest_version()
    finally:
        store.close()


def test_a_database_from_a_newer_version_is_refused(state_url: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    nxt = _latest_version() + 1
    (directory / f"{nxt:04d}_future.sql").write_text("CREATE TABLE future (id TEXT);\n")
    open_state(state_url, migrations_dir=directory).close()
    with pytest.raises(StoreError, match="newer OptiInfra"):
        open_state(state_url)


_MIGRATE_WHEN_GATE_OPENS = """
import sys, time
from pathlib import Path
from optiinfra.store.state import open_state
url, gate = sys.argv[1], Path(sys.argv[2])
print("ready", flush=True)
while not gate.exists():
    time.sleep(0.005)
store = open_state(url)
print("version", store.schema_version(), flush=True)
store.close()
"""


def test_two_processes_migrating_at_once_both_succeed(state_url: str, tmp_path: Path) -> None:
    outputs = run_at_once(
        _MIGRATE_WHEN_GATE_OPENS, [[state_url], [state_url]], tmp_path / "gate", timeout=120
    )
    assert outputs == [f"version {_latest_version()}"] * 2
    rows = _migration_rows(state_url)
    assert [row[0] for row in rows] == [
        m.version for m in discover(parse_state_url(state_url).get_backend_name())
    ]


# ------------------------------------------------------------------ files and parsing


def test_the_repository_migrations_cover_both_dialects() -> None:
    for dialect in ("sqlite", "postgresql"):
        migrations = discover(dialect)
        assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
        assert migrations[0].path.name == f"0001_initial.{dialect}.sql"


def test_badly_named_and_incomplete_migration_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_initial.sql").write_text("SELECT 1;")
    with pytest.raises(StoreError, match=r"1_initial\.sql"):
        discover("sqlite", tmp_path)
    (tmp_path / "1_initial.sql").unlink()
    (tmp_path / "0001_initial.postgresql.sql").write_text("SELECT 1;")
    with pytest.raises(StoreError, match="no file for sqlite"):
        discover("sqlite", tmp_path)
    (tmp_path / "0001_other.sql").write_text("SELECT 1;")
    with pytest.raises(StoreError, match="already used"):
        discover("postgresql", tmp_path)
    with pytest.raises(StoreError, match="missing"):
        discover("sqlite", tmp_path / "nowhere")


def test_statements_split_outside_quotes_comments_and_dollar_blocks() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE t (a TEXT DEFAULT 'x;y', "b;c" TEXT);
    /* block; comment */
    INSERT INTO t VALUES ('it''s; fine', 'z');
    CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[0].startswith("CREATE TABLE t") and "'x;y'" in statements[0]
    assert "'it''s; fine'" in statements[1]
    assert "$body$ SELECT 1; $body$" in statements[2]


def test_migration_lock_waits_rather_than_failing_on_sqlite(tmp_path: Path) -> None:
    """A writer holding the SQLite write lock delays a migrating process; it then succeeds."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    open_state(url).close()
    holder = create_engine(parse_state_url(url))
    with holder.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        waiter = start_python(_MIGRATE_WHEN_GATE_OPENS, url, str(tmp_path / "gate"))
        assert waiter.stdout is not None
        assert waiter.stdout.readline().strip() == "ready"
        (tmp_path / "gate").touch()
        time.sleep(0.5)
        assert waiter.poll() is None  # still waiting for the lock, not failed
        conn.exec_driver_sql("ROLLBACK")
    holder.dispose()
    out, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err
    assert f"version {_latest_version()}" in out
