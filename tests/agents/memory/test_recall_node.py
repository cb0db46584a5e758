"""The shared recall node with a real decision memory: features in evidence, adjusted
proposals, dropped ones noted; the recall callable crosses into a forked worker."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agents.common.agent import AgentDeps
from agents.common.proposals import Proposal
from agents.context import FleetContext
from agents.memory import DecisionFeatures, MemoryRecall, OutcomeRecord, remember_outcome
from agents.registry import get_agent
from optiinfra.store.memory import open_memory
from tests.agents.fleets import Fleet, context


def _fleet() -> FleetContext:
    return context(
        [
            Fleet("idle-7b", rate=0.0, running=0.0, stateless=True),
            Fleet(
                "idle-other",
                rate=0.0,
                running=0.0,
                gpu="H100",
                price=6.88,
                model="meta-llama/Llama-3.1-70B",
                gpu_count=4,
                cloud="gcp",
            ),
        ]
    )


def _run(recall: Any) -> tuple[dict[str, Proposal], list[str]]:
    proposals, notes = get_agent("cost").run(_fleet(), AgentDeps(recall=recall))
    return {p.target: p for p in proposals if p.kind == "idle_shutdown"}, notes


def _rolled_back(features: dict[str, Any], plan: str, step: float) -> OutcomeRecord:
    return OutcomeRecord(
        plan_id=plan,
        kind="idle_shutdown",
        target=features["target"],
        saving_usd_per_month=0.0,
        rolled_back=True,
        first_step_percent=step,
        reason="a batch job still called it",
    )


def test_recall_adjusts_and_drops_proposals_from_remembered_outcomes(tmp_path: Path) -> None:
    url = f"qdrant://{tmp_path / 'memory'}"
    memory = open_memory(url)
    empty = MemoryRecall(url, empty=True)
    first, _ = _run(empty)
    assert set(first) == {"idle-7b", "idle-other"}
    features = first["idle-7b"].evidence["decision_features"]
    assert features["kind"] == "idle_shutdown" and features["price_gap"] == -1.0
    assert "similar_outcomes" not in first["idle-7b"].evidence

    remember_outcome(memory, DecisionFeatures(**features), _rolled_back(features, "p1", 10))
    second, _ = _run(MemoryRecall(url))
    chat = second["idle-7b"]
    assert chat.evidence["first_step_percent"] == 5.0
    assert chat.evidence["similar_outcomes"][0]["plan_id"] == "p1"
    assert chat.recalled and chat.recalled[0]["rolled_back"] is True
    # The other deployment (70B on 4 × H100 at GCP) is not similar enough to be touched.
    assert "first_step_percent" not in second["idle-other"].evidence

    remember_outcome(memory, DecisionFeatures(**features), _rolled_back(features, "p2", 5))
    third, notes = _run(MemoryRecall(url))
    assert "idle-7b" not in third and "idle-other" in third
    assert any("idle_shutdown on idle-7b not proposed: rolled back 2 times" in n for n in notes)
    memory.close()


def _recall_in_child(recall: MemoryRecall, proposal: Proposal) -> list[dict[str, Any]]:
    with recall.session():
        return recall(proposal)


def test_the_recall_crosses_into_a_forked_worker(tmp_path: Path) -> None:
    url = f"qdrant://{tmp_path / 'memory'}"
    first, _ = _run(MemoryRecall(url, empty=True))
    proposal = first["idle-7b"]
    features = proposal.evidence["decision_features"]
    memory = open_memory(url)
    remember_outcome(memory, DecisionFeatures(**features), _rolled_back(features, "p1", 10))
    recall = MemoryRecall(url)
    recall.memory()  # opened in the parent: the open memory must not travel
    assert pickle.loads(pickle.dumps(recall))._memory is None
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        found = pool.submit(_recall_in_child, recall, proposal).result(timeout=60)
    assert [f["outcome"]["plan_id"] for f in found] == ["p1"]
    memory.close()


def test_a_failing_memory_keeps_the_proposals(tmp_path: Path) -> None:
    def broken(proposal: Proposal) -> list[dict[str, Any]]:
        raise RuntimeError("memory on fire")

    found, notes = _run(broken)
    assert set(found) == {"idle-7b", "idle-other"}
    assert "decision_features" in found["idle-7b"].evidence
    assert any("memory recall failed for idle-7b: memory on fire" in n for n in notes)

    busy = MemoryRecall(f"qdrant://{tmp_path / 'blocked' / 'x'}")
    (tmp_path / "blocked").write_text("not a directory")
    found, notes = _run(busy)
    assert set(found) == {"idle-7b", "idle-other"}
    assert any("decision memory unavailable" in n for n in notes)


@pytest.mark.parametrize("garbage", [[{"similarity": "high"}], [{}]])
def test_unreadable_recalls_are_ignored(garbage: list[dict[str, Any]]) -> None:
    found, notes = _run(lambda proposal: garbage)
    assert set(found) == {"idle-7b", "idle-other"}
    assert "similar_outcomes" not in found["idle-7b"].evidence
    assert any("unreadable outcome" in n for n in notes)
