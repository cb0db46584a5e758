"""The SQL files of the time-series store: migrations and named queries.

``sql/clickhouse/NNNN_name.sql`` are migrations, applied once each, in order of
``NNNN``; ``sql/clickhouse/queries/NAME.sql`` are statements the store runs by name
(``refresh_summary``). Files hold several statements separated by ``;``. Keeping the
SQL in files, not Python strings, lets one dialect run on chDB and on a server and be
read and reviewed as SQL.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from optiinfra.errors import StoreError

#: ``<repo>/sql/clickhouse``: this file is ``<repo>/optiinfra/store/timeseries/sqlfiles.py``.
DEFAULT_SQL_DIR = Path(__file__).resolve().parents[3] / "sql" / "clickhouse"

_MIGRATION_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    checksum: str
    statements: tuple[str, ...]


def split_statements(text: str) -> list[str]:
    """Split SQL text on ``;`` outside quotes, dropping ``--`` comments and blanks."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            current.append(char)
            if char == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
            current.append(char)
        elif text.startswith("--", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        elif char == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def load_migrations(sql_dir: Path = DEFAULT_SQL_DIR) -> list[Migration]:
    """Every ``NNNN_name.sql`` in ``sql_dir``, in version order (duplicates are an error)."""
    if not sql_dir.is_dir():
        raise StoreError(f"time-series SQL directory not found: {sql_dir}")
    migrations: dict[int, Migration] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        match = _MIGRATION_NAME.fullmatch(path.name)
        if not match:
            raise StoreError(f"{path}: migration files are named NNNN_lowercase_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise StoreError(
                f"{path}: version {version} is also used by {migrations[version].path.name}"
            )
        text = path.read_text(encoding="utf-8")
        migrations[version] = Migration(
            version=version,
            name=match.group(2),
            path=path,
            checksum=hashlib.sha256(text.encode()).hexdigest(),
            statements=tuple(split_statements(text)),
        )
    return [migrations[v] for v in sorted(migrations)]


def load_query(name: str, sql_dir: Path = DEFAULT_SQL_DIR) -> list[str]:
    """The statements of ``sql_dir/queries/<name>.sql``."""
    path = sql_dir / "queries" / f"{name}.sql"
    try:
        return split_statements(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
