"""Consolidation: under-used single-GPU deployments packed onto one GPU when their
memory and their busiest hours' load fit together."""

from __future__ import annotations

import pytest

from agents.common.agent import AgentDeps
from agents.common.capacity import ReplicaCapacityEstimator
from agents.common.proposals import HOURS_PER_MONTH
from agents.registry import get_agent
from agents.resource.consolidation import (
    MAX_SHARED_LOAD,
    USABLE_MEMORY,
    detect_consolidation,
    sharing_candidates,
)
from optiinfra.capacity import CapacityModel
from tests.agents.fleets import Fleet, context

SMALL = "meta-llama/Llama-3.2-1B"
ARGS = {"max_num_seqs": 32, "max_model_len": 4096}


def _small(name: str, rate: float = 0.05, **kw: object) -> Fleet:
    base: dict[str, object] = dict(
        model=SMALL, gpu="A10G", instance_type="g5.xlarge", price=1.006, rate=rate,
        prompt_tokens=500, output_tokens=100, running=1.0, engine_args=ARGS,
    )  # fmt: skip
    base.update(kw)
    return Fleet(name, **base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model() -> CapacityModel:
    return CapacityModel.default()


def _detect(fleets: list[Fleet], model: CapacityModel):  # type: ignore[no-untyped-def]
    ctx = context(fleets)
    return detect_consolidation(ctx, ReplicaCapacityEstimator(model, ctx))


def test_two_small_models_at_a_trickle_share_one_gpu(model: CapacityModel) -> None:
    proposals, notes = _detect([_small("faq-1b"), _small("tags-1b", rate=0.08)], model)
    [p] = proposals
    assert p.kind == "consolidation" and p.agent == "resource"
    members = p.evidence["members"]
    assert set(members) == {"faq-1b", "tags-1b"}
    assert p.evidence["summed_load_share"] <= MAX_SHARED_LOAD
    memory = sum(m["memory_gib"] for m in members.values())
    assert memory <= USABLE_MEMORY * p.evidence["gpu_memory_gib"]
    change = p.change["consolidate"]
    assert change["host"] == p.target and len(change["members"]) == 1
    shares = change["gpu_memory_utilization"]
    assert sum(shares.values()) == pytest.approx(USABLE_MEMORY, abs=0.01)
    assert p.expected_deltas["cost_usd_per_month"].value == pytest.approx(-1.006 * HOURS_PER_MONTH)
    assert len(notes) == 2 and all("under-used" in n for n in notes)


def test_a_busy_deployment_keeps_its_gpu(model: CapacityModel) -> None:
    ctx = context([_small("faq-1b", rate=30.0), _small("tags-1b")])
    found, _ = sharing_candidates(ctx, ReplicaCapacityEstimator(model, ctx))
    assert [t.name for t in found] == ["tags-1b"]
    proposals, _ = _detect([_small("faq-1b", rate=30.0), _small("tags-1b")], model)
    assert proposals == []


def test_models_that_do_not_fit_together_are_not_packed(model: CapacityModel) -> None:
    # two 8B models in fp16 need ~15 GiB of weights each: not both on a 24 GB A10G
    big = dict(model="meta-llama/Llama-3.1-8B-Instruct")
    proposals, notes = _detect([_small("a-8b", **big), _small("b-8b", **big)], model)
    assert proposals == []
    assert len(notes) == 2  # both under-used, still reported


def test_only_like_for_like_deployments_share(model: CapacityModel) -> None:
    for other in (
        _small("tags-1b", gpu="L4", instance_type="g6.xlarge", price=0.8048),
        _small("tags-1b", market="spot"),
        _small("tags-1b", replicas=2),
        _small("tags-1b", rate=0.0),
    ):
        proposals, _ = _detect([_small("faq-1b"), other], model)
        assert proposals == [], other


def test_three_trickles_pack_onto_one_gpu_when_they_fit(model: CapacityModel) -> None:
    fleets = [_small(f"m{k}-1b", rate=0.03) for k in range(3)]
    [p] = _detect(fleets, model)[0]
    assert len(p.change["consolidate"]["members"]) == 2
    assert p.expected_deltas["gpus"].value == -2


def test_the_resource_agent_proposes_consolidation_without_hourly_history() -> None:
    proposals, notes = get_agent("resource").run(
        context([_small("faq-1b"), _small("tags-1b")]), AgentDeps()
    )
    assert [p.kind for p in proposals] == ["consolidation"]
    assert any("under-used" in n for n in notes)
