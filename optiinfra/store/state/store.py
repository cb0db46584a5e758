"""The state store: providers, recommendations, plans, approvals, rollouts, outcomes, audit.

One :class:`StateStore` wraps one SQLAlchemy engine (SQLite by default, PostgreSQL by
URL; see :mod:`.engine`) and opens short sessions on it, so many processes can share the
database: nothing holds a connection between calls.

Example::

    store = open_state("sqlite:////home/me/.optiinfra/state.db")
    store.sync_config(config)
    with store.session() as session:
        session.add(Recommendation(tenant="default", agent="cost", kind="spot_migration"))
    store.close()
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DatabaseError, DBAPIError, InterfaceError, OperationalError
from sqlmodel import Session, col

from optiinfra.config.schema import OptiInfraConfig, ProviderConfig
from optiinfra.config.schema import Tenant as TenantConfig
from optiinfra.errors import StoreBusyError, StoreError
from optiinfra.store.state import migrate as migrations
from optiinfra.store.state.engine import (
    SQLITE_BEGIN_OPTION,
    create_state_engine,
    display_url,
    parse_state_url,
)
from optiinfra.store.state.tables import (
    STATE_TABLES,
    AuditEvent,
    CollectionRun,
    CollectionStatus,
    Provider,
    Tenant,
)
from optiinfra.store.state.types import new_id, utcnow

#: Keys whose values are never written to the audit log (matched case-insensitively).
_SECRET_KEY_PARTS = ("password", "secret", "token", "api_key", "apikey", "authorization")
_MAX_ERROR_CHARS = 2000


def open_state(
    url: str,
    *,
    migrate: bool = True,
    busy_timeout: float = 30.0,
    migrations_dir: Path | None = None,
) -> StateStore:
    """Open the state store at ``url`` and, by default, bring its schema up to date.

    ``url`` is ``sqlite:////abs/path/state.db`` or ``postgresql+psycopg://user@host/db``
    (``postgresql://`` is read as psycopg). A bad URL, an unreachable server or an
    unwritable path raises :class:`StoreError` naming the URL without its password.
    ``migrations_dir`` replaces ``sql/state`` (tests use it).
    """
    parsed = parse_state_url(url)
    shown = display_url(url)
    engine = create_state_engine(parsed, busy_timeout=busy_timeout)
    store = StateStore(engine, display_url=shown, migrations_dir=migrations_dir)
    try:
        if migrate:
            store.migrate()
        else:
            store.schema_version()  # connects, so a bad server fails here, not later
    except BaseException:
        store.close()
        raise
    return store


class StateStore:
    """Sessions and the few operations every part needs on the state database."""

    def __init__(
        self, engine: Engine, *, display_url: str, migrations_dir: Path | None = None
    ) -> None:
        self.display_url = display_url
        self._engine = engine
        self._migrations_dir = migrations_dir
        self._password = engine.url.password
        self._write_engine = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        self._read_engine = engine.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})

    def __repr__(self) -> str:
        return f"StateStore({self.display_url!r})"

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    # ------------------------------------------------------------ schema

    def migrate(self) -> int:
        """Apply pending migrations (safe with concurrent processes); return the version."""
        with self._errors(), self._engine.connect() as conn:
            conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                return migrations.apply_pending(conn, self._migrations_dir)

    def schema_version(self) -> int:
        """The highest applied migration (0 for a database never migrated)."""
        with self._errors(), self._read_engine.connect() as conn, conn.begin():
            return migrations.current_version(conn)

    # ------------------------------------------------------------ sessions

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back if it raises.

        Objects stay readable after the block (``expire_on_commit=False``). On SQLite a
        writing session takes the write lock when it starts (``BEGIN IMMEDIATE``); pass
        ``readonly=True`` for reads, which never wait for a writer.
        """
        engine = self._read_engine if readonly else self._write_engine
        with self._errors(), Session(engine, expire_on_commit=False) as session:
            try:
                yield session
                if not readonly:
                    session.commit()
                # A read-only session just closes: a rollback would expire what was read.
            except BaseException:
                session.rollback()
                raise

    def row_counts(self) -> dict[str, int]:
        """Rows per state table, in :data:`STATE_TABLES` order."""
        with self.session(readonly=True) as session:
            return {
                table: int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in STATE_TABLES
            }

    # ------------------------------------------------------------ audit

    def record_audit(
        self,
        *,
        actor: str,
        action: str,
        subject: str,
        detail: dict[str, Any] | None = None,
        tenant: str = "default",
    ) -> None:
        """Append one audit event. Values under secret-looking keys are replaced."""
        with self.session() as session:
            session.add(_audit_event(actor, action, subject, detail, tenant))

    # ------------------------------------------------------------ configuration

    def sync_config(self, config: OptiInfraConfig) -> None:
        """Upsert tenants and providers from ``providers.yaml``; never delete a row.

        A provider that is gone from the file is disabled and gets ``removed_at``; one
        that comes back is restored. Rows that did not change are not touched, so running
        this on every start is cheap and leaves ``updated_at`` meaningful.
        """
        now = utcnow()
        changes: dict[str, list[str]] = {"tenants": [], "providers": [], "removed": []}
        with self.session() as session:
            self._serialize(session, "sync_config")
            tenants = {t.id: t for t in session.exec(select(Tenant)).scalars()}
            wanted_tenants = {t.name: t for t in config.tenants}
            for provider in config.providers:
                wanted_tenants.setdefault(provider.tenant, TenantConfig(name=provider.tenant))
            for name, tenant_config in wanted_tenants.items():
                values = _tenant_values(tenant_config)
                row = tenants.get(name)
                if row is None:
                    session.add(Tenant(id=name, created_at=now, updated_at=now, **values))
                    changes["tenants"].append(name)
                elif _assign(row, values):
                    row.updated_at = now
                    changes["tenants"].append(name)
            session.flush()
            providers = {p.id: p for p in session.exec(select(Provider)).scalars()}
            configured = {p.name for p in config.providers}
            for provider_config in config.providers:
                values = _provider_values(provider_config)
                row = providers.get(provider_config.name)
                if row is None:
                    session.add(
                        Provider(id=provider_config.name, created_at=now, updated_at=now, **values)
                    )
                    changes["providers"].append(provider_config.name)
                elif _assign(row, values):
                    row.updated_at = now
                    changes["providers"].append(provider_config.name)
            for name, row in providers.items():
                if name not in configured and row.removed_at is None:
                    row.enabled = False
                    row.removed_at = now
                    row.updated_at = now
                    changes["removed"].append(name)
            if any(changes.values()):
                session.add(
                    _audit_event("config", "config.sync", "providers.yaml", changes, "default")
                )

    # ------------------------------------------------------------ collection runs

    def record_collection_run(self, row: CollectionRun) -> None:
        """Store one provider's result of one collection run (again: replaces it)."""
        values = _collection_run_values(row)
        with self.session() as session:
            self._serialize(session, "collection_runs")
            existing = session.exec(
                select(CollectionRun).where(
                    col(CollectionRun.run_id) == values["run_id"],
                    col(CollectionRun.provider) == values["provider"],
                )
            ).scalar_one_or_none()
            if existing is None:
                session.add(CollectionRun(**values))
            else:
                values.pop("id")
                values.pop("created_at")
                _assign(existing, values)

    def last_collection_runs(self, limit: int = 20) -> list[CollectionRun]:
        """The latest per-provider collection results, newest first."""
        with self.session(readonly=True) as session:
            statement = (
                select(CollectionRun)
                .order_by(
                    col(CollectionRun.started_at).desc(),
                    col(CollectionRun.created_at).desc(),
                    col(CollectionRun.provider),
                )
                .limit(max(0, int(limit)))
            )
            return list(session.exec(statement).scalars())

    def last_successful_collections(self, providers: Iterable[str]) -> dict[str, datetime]:
        """When each named provider's last ok or partial collection started; providers
        never collected successfully are absent (a failed run does not count)."""
        wanted = list(providers)
        if not wanted:
            return {}
        started = func.max(CollectionRun.started_at)
        statement = (
            select(CollectionRun.provider, started)
            .where(col(CollectionRun.provider).in_(wanted))
            .where(col(CollectionRun.status) != CollectionStatus.FAILED)
            .group_by(col(CollectionRun.provider))
        )
        with self.session(readonly=True) as session:
            return {provider: at for provider, at in session.execute(statement).all()}

    def count(self, table: str) -> int:
        """Rows in one state table (``KeyError`` for a name that is not one)."""
        if table not in STATE_TABLES:
            raise KeyError(table)
        with self.session(readonly=True) as session:
            return int(session.execute(select(func.count()).select_from(text(table))).scalar_one())

    def close(self) -> None:
        """Release all connections; the store may not be used afterwards."""
        self._engine.dispose()

    # ------------------------------------------------------------ helpers

    def _serialize(self, session: Session, what: str) -> None:
        """Serialise read-then-write sections between processes (SQLite: BEGIN IMMEDIATE)."""
        if self.dialect == "postgresql":
            session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"optiinfra.state:{what}"},
            )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn driver-level failures (unreachable, locked, read-only) into StoreError."""
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            message = self._scrub(_first_line(exc))
            if "database is locked" in message or "database table is locked" in message:
                raise StoreBusyError(
                    f"state store {self.display_url} stayed locked by another process: {message}"
                ) from None
            raise StoreError(f"state store {self.display_url}: {message}") from None
        except DBAPIError as exc:
            # A plain DatabaseError is the file or server itself ("file is not a
            # database"); its subclasses (IntegrityError...) are the caller's bugs.
            if type(exc) is DatabaseError or exc.connection_invalidated:
                raise StoreError(
                    f"state store {self.display_url}: {self._scrub(_first_line(exc))}"
                ) from None
            raise

    def _scrub(self, message: str) -> str:
        if self._password:
            message = message.replace(self._password, "***")
        return message


# ---------------------------------------------------------------- row helpers


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def _assign(row: Any, values: dict[str, Any]) -> bool:
    """Set the values that differ; say whether any did."""
    changed = False
    for key, value in values.items():
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed = True
    return changed


def _tenant_values(tenant: TenantConfig) -> dict[str, Any]:
    return {
        "display_name": tenant.display_name,
        "budget_usd_per_month": tenant.budget_usd_per_month,
        "labels": dict(tenant.labels),
        "removed_at": None,
    }


def _provider_values(provider: ProviderConfig) -> dict[str, Any]:
    settings = provider.model_dump(
        mode="json", exclude={"name", "kind", "tenant", "region", "enabled"}
    )
    return {
        "tenant": provider.tenant,
        "kind": provider.kind,
        "region": provider.region,
        "enabled": provider.enabled,
        "config": settings,
        "removed_at": None,
    }


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            str(key): "***"
            if any(part in str(key).lower() for part in _SECRET_KEY_PARTS)
            else _redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item) for item in value]
    return value


def _audit_event(
    actor: str, action: str, subject: str, detail: dict[str, Any] | None, tenant: str
) -> AuditEvent:
    # A JSON round trip makes the payload plain (datetimes, enums, paths become text).
    plain = json.loads(json.dumps(_redact(detail or {}), default=str))
    return AuditEvent(
        id=new_id(),
        at=utcnow(),
        tenant=tenant,
        actor=actor,
        action=action,
        subject=subject,
        detail=plain,
    )


def _collection_run_values(row: CollectionRun) -> dict[str, Any]:
    """Check a CollectionRun (table models skip validation) and fill what is derivable."""
    values = {name: getattr(row, name) for name in CollectionRun.model_fields}
    for name in ("run_id", "provider", "started_at", "finished_at"):
        if not values.get(name):
            raise ValueError(f"CollectionRun.{name} is required")
    values["status"] = CollectionStatus(values["status"])
    if values["finished_at"] < values["started_at"]:
        raise ValueError(
            f"CollectionRun for {values['provider']}: finished_at is before started_at"
        )
    if values["samples"] is None or int(values["samples"]) < 0:
        raise ValueError(f"CollectionRun for {values['provider']}: samples must be >= 0")
    if values["duration_seconds"] is None:
        values["duration_seconds"] = (values["finished_at"] - values["started_at"]).total_seconds()
    if values["error"]:
        values["error"] = str(values["error"])[:_MAX_ERROR_CHARS]
    values["id"] = values["id"] or new_id()
    values["created_at"] = values["created_at"] or utcnow()
    values["tenant"] = values["tenant"] or "default"
    return values
