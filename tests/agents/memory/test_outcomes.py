"""Remembering and recalling outcomes on real Qdrant local mode."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.memory import (
    DecisionFeatures,
    OutcomeRecord,
    recall_similar,
    remember_outcome,
)
from optiinfra.store.memory import DecisionMemory, DecisionRecord, open_memory

CHAT = DecisionFeatures(
    kind="idle_shutdown",
    provider="fleet",
    cloud="aws",
    target="chat",
    gpu="L4",
    gpu_count=1,
    replicas=1,
    params_b=8.03,
    load_rps_per_replica=0.0,
    batch_occupancy=0.0,
    gpu_util=0.0,
    kv_usage=0.0,
    price_gap=-1.0,
    on_demand_share=1.0,
    spot_share=0.0,
    reserved_share=0.0,
    quantization_step=0.0,
    expected_saving_usd_per_month=587.5,
)


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[DecisionMemory]:
    opened = open_memory(f"qdrant://{tmp_path / 'memory'}", lock_timeout=30)
    yield opened
    opened.close()


def _outcome(plan: str = "p1", **fields: object) -> OutcomeRecord:
    values: dict[str, object] = {
        "plan_id": plan,
        "recommendation_id": "r1",
        "kind": "idle_shutdown",
        "target": "chat",
        "saving_usd_per_month": 0.0,
        "quality_relative": -0.14,
        "rolled_back": True,
        "reason": "quality dropped 14% at the 10% step",
        "first_step_percent": 10,
        "finished_at": datetime(2026, 11, 20, tzinfo=UTC),
    }
    values.update(fields)
    return OutcomeRecord.model_validate(values)


def test_remember_then_recall_round_trip(memory: DecisionMemory) -> None:
    remember_outcome(memory, CHAT, _outcome())
    nearby = CHAT.model_copy(update={"target": "chat-2", "replicas": 2})
    (found,) = recall_similar(memory, nearby)
    assert found.similarity > 0.95
    assert found.record_id == "outcome:p1:r1"
    assert found.features == CHAT
    assert found.outcome == _outcome()
    summary = found.summary()
    assert summary["rolled_back"] is True and summary["first_step_percent"] == 10
    assert summary["expected_saving_usd_per_month"] == 587.5


def test_remembering_again_replaces_the_outcome(memory: DecisionMemory) -> None:
    remember_outcome(memory, CHAT, _outcome(reason="first report"))
    remember_outcome(memory, CHAT, _outcome(reason="final report"))
    remember_outcome(memory, CHAT, _outcome(recommendation_id="r2"))
    assert memory.count() == 2
    reasons = sorted(r.outcome.reason for r in recall_similar(memory, CHAT))
    assert reasons == ["final report", "quality dropped 14% at the 10% step"]


def test_other_kinds_and_far_contexts_are_not_recalled(memory: DecisionMemory) -> None:
    spot = CHAT.model_copy(update={"kind": "spot_migration", "target_market": "spot"})
    remember_outcome(memory, spot, _outcome(plan="spot", kind="spot_migration"))
    assert recall_similar(memory, CHAT) == []
    assert [r.outcome.plan_id for r in recall_similar(memory, CHAT, min_similarity=0.0)] == ["spot"]
    # A record some other writer put in the collection is skipped, not an error.
    memory.upsert([DecisionRecord(id="foreign", vector=[1.0] * 64, kind="idle_shutdown")])
    assert [r.outcome.plan_id for r in recall_similar(memory, spot)] == ["spot"]


def test_mismatches_are_refused(memory: DecisionMemory, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind 'spot_migration' does not match"):
        remember_outcome(memory, CHAT, _outcome(kind="spot_migration"))
    small = open_memory(f"qdrant://{tmp_path / 'small'}", vector_size=8)
    try:
        with pytest.raises(ValueError, match="64 values"):
            remember_outcome(small, CHAT, _outcome())
    finally:
        small.close()
    assert memory.count() == 0
