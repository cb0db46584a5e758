"""The migration runner: ``sql/state/NNNN_name.sql`` files, applied in order, once.

Why not Alembic: DESIGN.md keeps every SQL-store migration as a ``.sql`` file under
``sql/`` that the code loads, so the schema is readable (and reviewable) as SQL, and the
same runner serves SQLite and PostgreSQL without a Python migration environment.

Rules:

* A migration is ``NNNN_name.sql`` (portable), or a pair of dialect variants
  ``NNNN_name.postgresql.sql`` / ``NNNN_name.sqlite.sql`` where the SQL must differ. For
  each version the runner uses the variant for the current dialect, else the portable
  file; a version with no file for the dialect is an error.
* All pending migrations run in one transaction, so a failure applies none of them.
* Each applied migration is recorded in ``schema_migrations`` (version, name, checksum,
  applied_at). An applied file whose checksum changed is refused (edit history with a
  new migration instead), as is a database that knows versions these files do not.
* Two processes starting at once are safe: PostgreSQL takes a transaction-scoped
  advisory lock (``pg_advisory_xact_lock``) keyed by the schema; SQLite starts the
  transaction with ``BEGIN IMMEDIATE``, so the second writer waits (busy timeout) and
  then finds the work done.

Statements are split on ``;`` outside quotes, comments and ``$tag$`` blocks, and sent
to the driver one by one without parameters (so ``%`` needs no escaping).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text

from optiinfra.errors import StoreError
from optiinfra.store.state.types import utcnow

#: ``sql/state`` at the top of the repository (this file is optiinfra/store/state/migrate.py).
MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "sql" / "state"

DIALECTS = ("postgresql", "sqlite")
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9][a-z0-9_]*?)(?:\.(postgresql|sqlite))?\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Migration:
    """One migration file as it applies to one dialect."""

    version: int
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def discover(dialect: str, directory: Path | None = None) -> list[Migration]:
    """The migrations for ``dialect`` in ``directory``, ordered by version.

    Raises :class:`StoreError` naming the file for a badly named file, two names for one
    version, or a version with no file for this dialect.
    """
    if dialect not in DIALECTS:
        raise StoreError(f"no migrations for database dialect {dialect!r}")
    directory = MIGRATIONS_DIR if directory is None else directory
    if not directory.is_dir():
        raise StoreError(
            f"migration directory {directory} is missing: the state store's schema lives "
            "in sql/state/ at the top of the OptiInfra source tree"
        )
    # version -> {variant (None = portable): path}, and version -> name
    files: dict[int, dict[str | None, Path]] = {}
    names: dict[int, str] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise StoreError(
                f"{path}: migration file name must look like 0001_some_name.sql "
                "(or 0001_some_name.postgresql.sql / .sqlite.sql)"
            )
        version, name, variant = int(match.group(1)), match.group(2), match.group(3)
        if names.setdefault(version, name) != name:
            raise StoreError(
                f"{path}: version {version:04d} is already used by migration "
                f"{version:04d}_{names[version]}"
            )
        files.setdefault(version, {})[variant] = path
    migrations: list[Migration] = []
    for version in sorted(files):
        variants = files[version]
        path = variants.get(dialect) or variants.get(None)
        if path is None:
            raise StoreError(
                f"migration {version:04d}_{names[version]} in {directory} has no file for "
                f"{dialect}: add {version:04d}_{names[version]}.sql or "
                f"{version:04d}_{names[version]}.{dialect}.sql"
            )
        raw = path.read_bytes()
        migrations.append(
            Migration(
                version=version,
                name=names[version],
                path=path,
                sql=raw.decode("utf-8"),
                checksum=hashlib.sha256(raw).hexdigest(),
            )
        )
    return migrations


def split_statements(sql: str) -> list[str]:
    """Split a SQL script into statements (``;`` outside quotes, comments, ``$$``)."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            current.append("\n")
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            current.append(" ")
            continue
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:  # doubled quote
                        end += 2
                        continue
                    break
                end += 1
            current.append(sql[i : end + 1])
            i = end + 1
            continue
        if ch == "$":
            tag = re.match(r"\$[A-Za-z_]*\$", sql[i:])
            if tag:
                close = sql.find(tag.group(0), i + len(tag.group(0)))
                end = n if close < 0 else close + len(tag.group(0))
                current.append(sql[i:end])
                i = end
                continue
        if ch == ";":
            statement = "".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    statement = "".join(current).strip()
    if statement:
        statements.append(statement)
    return statements


def applied_versions(conn: Connection) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of what this database has applied ({} if none)."""
    if not _has_migrations_table(conn):
        return {}
    rows = conn.execute(text("SELECT version, name, checksum FROM schema_migrations"))
    return {int(version): (name, checksum) for version, name, checksum in rows}


def current_version(conn: Connection) -> int:
    """The highest applied version, 0 for an empty database."""
    return max(applied_versions(conn), default=0)


def apply_pending(conn: Connection, directory: Path | None = None) -> int:
    """Apply what is pending, inside the caller's transaction; return the schema version.

    The caller begins the transaction (``BEGIN IMMEDIATE`` on SQLite); this takes the
    PostgreSQL advisory lock itself.
    """
    dialect = conn.dialect.name
    migrations = discover(dialect, directory)
    if dialect == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('optiinfra.migrate:' || current_schema()))")
        )
    _execute_script(conn, _CREATE_TABLE)
    applied = applied_versions(conn)
    known = {m.version: m for m in migrations}
    for version, (name, checksum) in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            newest = max(known, default=0)
            raise StoreError(
                f"the database has migration {version:04d}_{name} applied, which these "
                f"files do not have (they stop at {newest:04d}): the database was migrated "
                "by a newer OptiInfra; upgrade OptiInfra to use it"
            )
        if migration.checksum != checksum:
            raise StoreError(
                f"{migration.path}: this migration was applied with different contents "
                f"(checksum {checksum[:12]}, file now {migration.checksum[:12]}); never edit "
                "an applied migration, add a new one instead"
            )
    for migration in migrations:
        if migration.version in applied:
            continue
        try:
            for statement in split_statements(migration.sql):
                _execute_script(conn, statement)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(
                f"{migration.path}: migration failed, nothing applied: {_first_line(exc)}"
            ) from exc
        conn.execute(
            text(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                "VALUES (:version, :name, :checksum, :applied_at)"
            ),
            {
                "version": migration.version,
                "name": migration.name,
                "checksum": migration.checksum,
                "applied_at": utcnow().isoformat(),
            },
        )
    return max([*applied, *(m.version for m in migrations)], default=0)


def _execute_script(conn: Connection, statement: str) -> None:
    """Send one statement straight to the driver (no parameter parsing)."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def _has_migrations_table(conn: Connection) -> bool:
    if conn.dialect.name == "postgresql":
        found = conn.execute(text("SELECT to_regclass('schema_migrations')")).scalar()
        return found is not None
    found = conn.execute(
        text("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
    ).scalar()
    return found is not None


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
