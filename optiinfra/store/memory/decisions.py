"""Decision memory: one Qdrant collection of decision contexts with their outcomes.

Every decision OptiInfra makes is remembered as a vector (the decision's context) and a
payload (the decision and what came of it). Agents recall the most similar past
decisions, filtered by kind, tenant or provider, before proposing a new one.

Qdrant runs embedded by default (local mode, ``qdrant:///abs/path``) or as a server
(``http(s)://host:6333``). Local mode allows one client per data directory, so the
embedded store is opened briefly per call under an inter-process file lock
(:mod:`.lock`); :meth:`DecisionMemory.hold` keeps one client for a block of calls.
Local mode also loads the whole collection into memory on every open: fine for
thousands of decisions, and the reason to switch to a server for millions.

Example::

    memory = open_memory("qdrant:///home/me/.optiinfra/memory", vector_size=4)
    memory.upsert([DecisionRecord(id=plan_id, vector=[0.1, 0.9, 0.0, 0.3],
                                  kind="spot_migration", tenant="acme", provider="aws",
                                  payload={"decision": {...}, "outcome": {...}})])
    similar = memory.search([0.1, 0.8, 0.1, 0.3], kind="spot_migration", limit=5)
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from qdrant_client import QdrantClient, models

from optiinfra.errors import StoreBusyError, StoreError
from optiinfra.store.locking import InterProcessLock

#: Length of a decision-context vector: the layout is ``agents/memory/features.py``
#: (58 values used, 6 reserved; docs/learning.md). Changing this number means a new
#: collection, because an existing one is never recreated (see ensure_collection).
DECISION_VECTOR_SIZE = 64

#: The one collection of decisions.
COLLECTION = "decisions"

#: Points per upsert request.
UPSERT_BATCH = 256

#: Namespace for turning non-UUID record ids into stable Qdrant point ids.
_ID_NAMESPACE = uuid.UUID("5b0e3c1e-7d4e-4f0b-9a52-0f3d1c6a7e21")

#: Payload keys the filters use (indexed on a server).
_FILTER_KEYS = ("kind", "tenant", "provider")


class DecisionRecord(BaseModel):
    """One remembered decision: its context vector and its payload (decision + outcome).

    ``id`` is any non-empty text (a plan or outcome id); upserting the same id again
    replaces the record. ``payload`` must be JSON-like; other values (datetimes) are
    stored as text. Cosine distance stores vectors normalised, so a recalled
    ``vector`` has unit length.
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    vector: list[float] = Field(min_length=1)
    kind: str
    tenant: str = "default"
    provider: str = ""
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("vector")
    @classmethod
    def _finite(cls, vector: list[float]) -> list[float]:
        if not all(math.isfinite(x) for x in vector):
            raise ValueError("vector values must be finite numbers")
        if not any(vector):
            raise ValueError("vector must not be all zeros (cosine similarity is undefined)")
        return vector

    @field_validator("payload")
    @classmethod
    def _plain_json(cls, payload: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(payload, default=str))


class Recalled(BaseModel):
    """A past decision found by :meth:`DecisionMemory.search`; ``score`` is cosine similarity."""

    id: str
    score: float
    record: DecisionRecord


def open_memory(
    url: str,
    *,
    vector_size: int = DECISION_VECTOR_SIZE,
    lock_timeout: float = 120.0,
    api_key: str | None = None,
    timeout: float = 10.0,
) -> DecisionMemory:
    """Open the decision memory at ``url`` and make sure its collection exists.

    ``qdrant:///abs/path`` is local mode in that directory; ``http(s)://host:6333`` is a
    Qdrant server (``api_key`` for Qdrant Cloud: pass it, never put it in the URL).
    Anything else, an unwritable path or an unreachable server raises :class:`StoreError`.
    """
    if vector_size < 1:
        raise ValueError("vector_size must be at least 1")
    parts = urlsplit(url)
    shown = _display_url(url)
    if parts.scheme == "qdrant":
        if parts.netloc or not parts.path.startswith("/"):
            raise StoreError(
                f"decision memory URL {shown}: give an absolute path, qdrant:///abs/path"
            )
        memory = DecisionMemory.local(
            Path(parts.path), vector_size=vector_size, lock_timeout=lock_timeout
        )
    elif parts.scheme in ("http", "https") and parts.hostname:
        if parts.password or "api_key" in parts.query:
            raise StoreError(
                f"decision memory URL {shown}: do not put credentials in the URL; "
                "pass api_key from the environment"
            )
        base = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
        memory = DecisionMemory(
            client_factory=lambda: QdrantClient(
                url=base, api_key=api_key, timeout=int(timeout), check_compatibility=False
            ),
            display_url=shown,
            vector_size=vector_size,
            lock=None,
            lock_timeout=lock_timeout,
        )
    else:
        raise StoreError(
            f"decision memory URL {shown}: expected qdrant:///abs/path (local mode) or "
            "http(s)://host:6333 (server)"
        )
    try:
        memory.ensure_collection()
    except BaseException:
        memory.close()
        raise
    return memory


class DecisionMemory:
    """The ``decisions`` collection, embedded or on a server, safe to share between processes."""

    def __init__(
        self,
        *,
        client_factory: Callable[[], QdrantClient],
        display_url: str,
        vector_size: int,
        lock: InterProcessLock | None,
        lock_timeout: float,
    ) -> None:
        """``lock`` is set for local mode: each outermost call then opens a short-lived
        client under it. Without one (a server), one client is kept until :meth:`close`."""
        self.display_url = display_url
        self.vector_size = vector_size
        self._client_factory = client_factory
        self._lock = lock
        self._lock_timeout = lock_timeout
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._client: QdrantClient | None = None
        #: Points per upsert request (Qdrant local mode commits each point on its own,
        #: ≈ 10 ms here, so batching mainly matters on a server).
        self.upsert_batch = UPSERT_BATCH

    @classmethod
    def local(cls, path: Path, *, vector_size: int, lock_timeout: float) -> DecisionMemory:
        """Local mode in directory ``path`` (created if missing), lock file beside it."""
        shown = f"qdrant://{path}"
        if path.exists() and not path.is_dir():
            raise StoreError(f"decision memory {shown}: {path} exists and is not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"decision memory {shown}: cannot create {path}: {exc.strerror or exc}"
            ) from None
        lock = InterProcessLock(
            path.with_name(path.name + ".lock"), guards=f"decision memory {shown}"
        )
        return cls(
            client_factory=lambda: QdrantClient(path=str(path)),
            display_url=shown,
            vector_size=vector_size,
            lock=lock,
            lock_timeout=lock_timeout,
        )

    def __repr__(self) -> str:
        return f"DecisionMemory({self.display_url!r})"

    # ------------------------------------------------------------ client lifetime

    @contextmanager
    def hold(self) -> Iterator[QdrantClient]:
        """Keep one client (and, embedded, the lock) for a block of calls. Re-entrant.

        Other threads of this process and other processes wait until the block ends.
        """
        if not self._thread_lock.acquire(timeout=self._lock_timeout):
            raise StoreBusyError(
                f"decision memory {self.display_url} is held by another thread of this "
                f"process; gave up after {self._lock_timeout:g}s"
            )
        try:
            if self._depth == 0 and self._client is None:
                self._open_client()
            assert self._client is not None
            self._depth += 1
            try:
                yield self._client
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock is not None:
                    self._close_client()
        finally:
            self._thread_lock.release()

    def _open_client(self) -> None:
        if self._lock is not None:
            self._lock.acquire(self._lock_timeout)
        try:
            self._client = self._client_factory()
        except Exception as exc:
            if self._lock is not None:
                self._lock.release()
            if "already accessed by another instance" in str(exc):
                raise StoreBusyError(
                    f"decision memory {self.display_url} is open in a Qdrant client that "
                    "does not take OptiInfra's lock; close it or use a Qdrant server"
                ) from None
            raise StoreError(f"decision memory {self.display_url}: {_first_line(exc)}") from None

    def _close_client(self) -> None:
        client, self._client = self._client, None
        try:
            if client is not None:
                client.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    def close(self) -> None:
        """Release the client and lock; the memory may be used again (it reopens)."""
        with self._thread_lock:
            if self._depth == 0 and self._client is not None:
                self._close_client()

    @contextmanager
    def _call(self, what: str) -> Iterator[QdrantClient]:
        """A client for one operation; Qdrant's and the network's errors become StoreError."""
        with self.hold() as client:
            try:
                yield client
            except (StoreError, ValueError):
                raise
            except Exception as exc:
                raise StoreError(
                    f"decision memory {self.display_url}: {what} failed: {_first_line(exc)}"
                ) from None

    # ------------------------------------------------------------ operations

    def ensure_collection(self) -> None:
        """Create ``decisions`` (cosine) if missing; refuse one whose vectors differ.

        A mismatching collection is never recreated: that would drop every memory.
        """
        with self._call("ensure_collection") as client:
            if not client.collection_exists(COLLECTION):
                try:
                    client.create_collection(
                        COLLECTION,
                        vectors_config=models.VectorParams(
                            size=self.vector_size, distance=models.Distance.COSINE
                        ),
                    )
                except Exception:
                    if not client.collection_exists(COLLECTION):  # not a lost race: a failure
                        raise
                if self._lock is None:  # payload indexes only matter on a server
                    for key in _FILTER_KEYS:
                        client.create_payload_index(
                            COLLECTION, key, field_schema=models.PayloadSchemaType.KEYWORD
                        )
            params = client.get_collection(COLLECTION).config.params.vectors
            if not isinstance(params, models.VectorParams):
                raise StoreError(
                    f"decision memory {self.display_url}: collection {COLLECTION!r} uses "
                    "named vectors, not one unnamed vector; it was not made by OptiInfra"
                )
            if params.size != self.vector_size or params.distance != models.Distance.COSINE:
                raise StoreError(
                    f"decision memory {self.display_url}: collection {COLLECTION!r} holds "
                    f"{params.size}-d {params.distance.value} vectors, this OptiInfra uses "
                    f"{self.vector_size}-d Cosine; it is left untouched (nothing deleted): "
                    "point OPTIINFRA_MEMORY_URL elsewhere or migrate the memories"
                )

    def upsert(self, records: Sequence[DecisionRecord]) -> int:
        """Insert or replace records by id, in batches; return how many were written."""
        points = [self._point(record) for record in records]
        if not points:
            return 0
        with self._call("upsert") as client:
            step = max(1, self.upsert_batch)
            for start in range(0, len(points), step):
                client.upsert(COLLECTION, points=points[start : start + step], wait=True)
        return len(points)

    def search(
        self,
        vector: Sequence[float],
        *,
        limit: int = 5,
        kind: str | None = None,
        tenant: str | None = None,
        provider: str | None = None,
    ) -> list[Recalled]:
        """The ``limit`` most similar decisions, optionally only of a kind/tenant/provider."""
        query = self._checked_vector(list(vector), "search vector")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        conditions = [
            models.FieldCondition(key=key, match=models.MatchValue(value=value))
            for key, value in (("kind", kind), ("tenant", tenant), ("provider", provider))
            if value is not None
        ]
        with self._call("search") as client:
            found = client.query_points(
                COLLECTION,
                query=query,
                query_filter=models.Filter(must=conditions) if conditions else None,
                limit=limit,
                with_payload=True,
                with_vectors=True,
            ).points
        return [_recalled(point) for point in found]

    def count(self) -> int:
        """How many decisions are remembered."""
        with self._call("count") as client:
            return int(client.count(COLLECTION, exact=True).count)

    # ------------------------------------------------------------ helpers

    def _checked_vector(self, vector: list[float], what: str) -> list[float]:
        if len(vector) != self.vector_size:
            raise ValueError(
                f"{what} has {len(vector)} values; the decision memory uses {self.vector_size}"
            )
        if not all(math.isfinite(x) for x in vector) or not any(vector):
            raise ValueError(f"{what} must be finite and not all zeros")
        return [float(x) for x in vector]

    def _point(self, record: DecisionRecord) -> models.PointStruct:
        vector = self._checked_vector(record.vector, f"record {record.id!r}")
        return models.PointStruct(
            id=point_id(record.id),
            vector=vector,
            payload={
                "record_id": record.id,
                "kind": record.kind,
                "tenant": record.tenant,
                "provider": record.provider,
                "payload": record.payload,
            },
        )


def point_id(record_id: str) -> str:
    """The Qdrant point id of a record: its UUID if it is one, else a stable uuid5."""
    try:
        return str(uuid.UUID(record_id))
    except ValueError:
        return str(uuid.uuid5(_ID_NAMESPACE, record_id))


def _recalled(point: models.ScoredPoint) -> Recalled:
    payload = point.payload or {}
    vector = point.vector if isinstance(point.vector, list) else []
    record = DecisionRecord(
        id=str(payload.get("record_id", point.id)),
        vector=[float(x) for x in vector],  # type: ignore[arg-type]
        kind=str(payload.get("kind", "")),
        tenant=str(payload.get("tenant", "")),
        provider=str(payload.get("provider", "")),
        payload=dict(payload.get("payload") or {}),
    )
    return Recalled(id=record.id, score=float(point.score), record=record)


def _display_url(url: str) -> str:
    """The URL without credentials or query (Qdrant API keys must never be shown)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    if parts.username:
        host = f"{parts.username}:***@{host}" if parts.password else f"{parts.username}@{host}"
    shown = f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url
    return shown + ("?***" if parts.query else "")


def _first_line(exc: BaseException) -> str:
    message = str(exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
