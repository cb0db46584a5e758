"""Decision memory on real Qdrant local mode: upsert, filtered search, persistence, processes."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from optiinfra.errors import StoreBusyError, StoreError
from optiinfra.store.memory import DecisionMemory, DecisionRecord, open_memory, point_id
from tests.store.state_fixtures import run_at_once, start_python

SIZE = 4


def _url(tmp_path: Path) -> str:
    return f"qdrant://{tmp_path / 'memory'}"


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[DecisionMemory]:
    opened = open_memory(_url(tmp_path), vector_size=SIZE, lock_timeout=30)
    yield opened
    opened.close()


def _record(
    record_id: str,
    vector: list[float],
    kind: str = "spot_migration",
    tenant: str = "default",
    provider: str = "aws",
    **payload: object,
) -> DecisionRecord:
    return DecisionRecord(
        id=record_id, vector=vector, kind=kind, tenant=tenant, provider=provider, payload=payload
    )


def test_search_ranks_by_similarity_and_filters(memory: DecisionMemory) -> None:
    written = memory.upsert(
        [
            _record("a", [1, 0, 0, 0], decision={"market": "spot"}, outcome={"saved_usd": 120}),
            _record("b", [0.9, 0.1, 0, 0], kind="right_size", provider="gcp"),
            _record("c", [0, 1, 0, 0], tenant="acme"),
            _record("d", [0, 0, 1, 0], kind="right_size", tenant="acme", provider="gcp"),
        ]
    )
    assert written == 4
    assert memory.count() == 4

    found = memory.search([1, 0.05, 0, 0], limit=3)
    assert [r.id for r in found] == ["a", "b", "c"]
    assert found[0].score > found[1].score > found[2].score
    assert found[0].record.payload == {
        "decision": {"market": "spot"},
        "outcome": {"saved_usd": 120},
    }
    assert found[0].record.kind == "spot_migration" and found[0].record.provider == "aws"

    assert [r.id for r in memory.search([1, 0, 0, 0], kind="right_size")] == ["b", "d"]
    assert [r.id for r in memory.search([1, 0, 0, 0], tenant="acme")] == ["c", "d"]
    assert [r.id for r in memory.search([1, 0, 0, 0], tenant="acme", provider="gcp")] == ["d"]
    assert memory.search([1, 0, 0, 0], kind="consolidation") == []


def test_upsert_is_idempotent_by_id(memory: DecisionMemory) -> None:
    plan_id = uuid.uuid4().hex
    memory.upsert([_record(plan_id, [1, 0, 0, 0], outcome="pending")])
    memory.upsert([_record(plan_id, [0, 1, 0, 0], outcome="rolled_back")])
    memory.upsert([_record("outcome:42", [0, 0, 1, 0]), _record("outcome:42", [0, 0, 1, 0])])
    assert memory.count() == 2
    (recalled,) = memory.search([0, 1, 0, 0], limit=1)
    assert recalled.id == plan_id
    assert recalled.record.payload == {"outcome": "rolled_back"}
    assert point_id("outcome:42") == point_id("outcome:42") != point_id("outcome:43")
    assert point_id(plan_id) == str(uuid.UUID(plan_id))


def test_upsert_writes_in_batches(memory: DecisionMemory) -> None:
    memory.upsert_batch = 10
    records = [_record(f"r{i}", [1, i, i % 7, 1]) for i in range(25)]
    assert memory.upsert(records) == 25
    assert memory.count() == 25
    assert {r.id for r in memory.search([1, 3, 3, 1], limit=25)} == {f"r{i}" for i in range(25)}


def test_bad_vectors_are_refused(memory: DecisionMemory) -> None:
    with pytest.raises(ValueError, match="3 values"):
        memory.upsert([_record("short", [1, 0, 0])])
    with pytest.raises(ValueError, match="all zeros"):
        _record("zero", [0, 0, 0, 0])
    with pytest.raises(ValueError, match="finite"):
        _record("nan", [float("nan"), 1, 0, 0])
    with pytest.raises(ValueError, match="5 values"):
        memory.search([1, 0, 0, 0, 0])
    assert memory.count() == 0


def test_memories_persist_after_close_and_reopen(tmp_path: Path) -> None:
    first = open_memory(_url(tmp_path), vector_size=SIZE)
    first.upsert([_record("kept", [0, 0, 0, 1], note="survives")])
    first.close()
    again = open_memory(_url(tmp_path), vector_size=SIZE)
    try:
        (recalled,) = again.search([0, 0, 0.1, 1])
        assert (recalled.id, recalled.record.payload) == ("kept", {"note": "survives"})
    finally:
        again.close()


_READ_AND_WRITE = """
import json, sys
from optiinfra.store.memory import DecisionRecord, open_memory
memory = open_memory(sys.argv[1], vector_size=4)
found = memory.search([0, 0, 0, 1], limit=1)
memory.upsert([DecisionRecord(id="from-child", vector=[0, 1, 1, 0], kind="k", payload={"pid": 1})])
print(json.dumps({"found": [r.id for r in found], "count": memory.count()}))
memory.close()
"""


def test_another_process_sees_and_adds_memories(tmp_path: Path) -> None:
    parent = open_memory(_url(tmp_path), vector_size=SIZE)
    parent.upsert([_record("from-parent", [0, 0, 0, 1])])
    # Between calls the parent holds nothing, so the child can open the same directory.
    child = start_python(_READ_AND_WRITE, _url(tmp_path))
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert json.loads(out) == {"found": ["from-parent"], "count": 2}
    assert parent.count() == 2
    assert [r.id for r in parent.search([0, 1, 1, 0], limit=1)] == ["from-child"]
    parent.close()


_UPSERT_MANY = """
import sys, time
from pathlib import Path
from optiinfra.store.memory import DecisionRecord, open_memory
url, name, gate = sys.argv[1], sys.argv[2], Path(sys.argv[3])
memory = open_memory(url, vector_size=4)
print("ready", flush=True)
while not gate.exists():
    time.sleep(0.005)
for i in range(20):
    memory.upsert([DecisionRecord(id=f"{name}-{i}", vector=[1, i + 1, 0, 1], kind=name)])
    memory.count()
memory.close()
print("done", flush=True)
"""


def test_two_processes_upserting_at_once_lose_nothing(tmp_path: Path) -> None:
    url = _url(tmp_path)
    open_memory(url, vector_size=SIZE).close()
    outputs = run_at_once(_UPSERT_MANY, [[url, "w1"], [url, "w2"]], tmp_path / "gate")
    assert outputs == ["done", "done"]
    memory = open_memory(url, vector_size=SIZE)
    try:
        assert memory.count() == 40
        for name in ("w1", "w2"):
            ids = {r.id for r in memory.search([1, 1, 0, 1], kind=name, limit=50)}
            assert ids == {f"{name}-{i}" for i in range(20)}
    finally:
        memory.close()


def test_threads_sharing_one_memory_lose_nothing(memory: DecisionMemory) -> None:
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            for i in range(10):
                memory.upsert([_record(f"{name}-{i}", [1, i + 1, 1, 0], kind=name)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"t{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert memory.count() == 30


def test_hold_keeps_one_client_and_blocks_others(tmp_path: Path) -> None:
    url = _url(tmp_path)
    holder = open_memory(url, vector_size=SIZE)
    other = open_memory(url, vector_size=SIZE, lock_timeout=0.3)
    with holder.hold() as client:
        holder.upsert([_record("x", [1, 1, 1, 1])])
        with holder.hold() as same:
            assert same is client
            assert holder.count() == 1
        with pytest.raises(StoreBusyError) as caught:
            other.count()
        assert str(tmp_path / "memory") in caught.value.message
        assert f"pid {os.getpid()}" in caught.value.message
    assert other.count() == 1  # released at the end of the block
    holder.close()
    other.close()


def test_a_different_vector_size_is_refused_and_nothing_is_lost(tmp_path: Path) -> None:
    url = _url(tmp_path)
    memory = open_memory(url, vector_size=SIZE)
    memory.upsert([_record("old", [1, 2, 3, 4])])
    memory.close()
    with pytest.raises(StoreError, match="4-d Cosine vectors, this OptiInfra uses 8-d"):
        open_memory(url, vector_size=8)
    reopened = open_memory(url, vector_size=SIZE)
    try:
        assert reopened.count() == 1
    finally:
        reopened.close()


@pytest.mark.parametrize(
    "url, expected",
    [
        ("qdrant://relative/memory", "absolute path"),
        ("ftp://example.com/memory", "expected qdrant:///abs/path"),
        ("memory", "expected qdrant:///abs/path"),
        ("http://admin:hunter2@127.0.0.1:1", "credentials"),
        ("http://127.0.0.1:1?api_key=hunter2", "credentials"),
        ("http://127.0.0.1:1", "127.0.0.1:1"),
    ],
)
def test_bad_urls_give_a_store_error_without_secrets(url: str, expected: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_memory(url, vector_size=SIZE)
    assert expected in caught.value.message
    assert "hunter2" not in caught.value.message


def test_an_unusable_path_gives_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    with pytest.raises(StoreError, match="not a directory"):
        open_memory(f"qdrant://{blocker}", vector_size=SIZE)
    with pytest.raises(StoreError, match="cannot create"):
        open_memory(f"qdrant://{blocker / 'memory'}", vector_size=SIZE)
    assert blocker.read_text() == "keep me"
