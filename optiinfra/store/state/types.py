"""Column types shared by the state tables: UTC timestamps, JSON payloads, text enums.

The same Python values must come back from SQLite and PostgreSQL:

* :class:`UTCDateTime` stores UTC and always returns timezone-aware UTC datetimes.
  PostgreSQL keeps ``TIMESTAMPTZ``; SQLite has no time zones, so the value is converted to
  UTC and stored naive, then marked UTC again on the way out. A naive datetime is refused
  on the way in: it is almost always a bug (local time mistaken for UTC).
* :data:`JSONType` is ``JSONB`` on PostgreSQL and ``JSON`` (text, checked with
  ``json_valid``) on SQLite.
* :class:`TextEnum` keeps a status as plain text in the database (no native enum type
  to migrate) and checks the allowed values in Python when a row is written.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh text id (uuid4 as 32 hex digits)."""
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is stored as UTC and read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} refused: give a timezone-aware time "
                "(datetime.now(UTC))"
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class TextEnum(TypeDecorator[StrEnum]):
    """A :class:`~enum.StrEnum` kept as text; unknown values are refused on write."""

    impl = String
    cache_ok = True

    def __init__(self, enum_type: type[StrEnum], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.enum_type = enum_type

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        try:
            return self.enum_type(value).value
        except ValueError:
            allowed = ", ".join(member.value for member in self.enum_type)
            raise ValueError(
                f"{value!r} is not a valid {self.enum_type.__name__}; allowed: {allowed}"
            ) from None

    def process_result_value(self, value: str | None, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum_type(value)

    @property
    def python_type(self) -> type[StrEnum]:
        return self.enum_type


#: JSON payload column: JSONB on PostgreSQL, JSON text on SQLite.
JSONType: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
