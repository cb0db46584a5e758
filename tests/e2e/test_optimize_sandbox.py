"""Acceptance: on the sandbox's default fleet, after a collection window, the optimize
flow proposes the four planted changes with figures that match the sandbox's prices and
configuration; on the healthy fleet it proposes nothing.

The sandbox is reached only over HTTP (the ``sandbox`` provider kind); the agents read
the stores and the public tables, never the sandbox's own model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from agents.common.proposals import HOURS_PER_MONTH
from flows.collect import collect_flow
from flows.optimize import OptimizeSummary, optimize_flow
from optiinfra.catalog.prices import quote
from optiinfra.runtime import load_runtime
from optiinfra.sandbox.fleet import load_fleet
from optiinfra.store.state.tables import Plan, PlanStatus, Recommendation
from tests.e2e.sandbox_thread import SandboxThread, sandbox_thread

pytestmark = pytest.mark.prefect

#: Collections 20 s apart: the window the agents see (idle needs 30 s of it here).
COLLECTIONS = 4
GAP_SECONDS = 20.0


def _config(tmp_path: Path, port: int) -> str:
    path = tmp_path / "providers.yaml"
    path.write_text(
        "version: 1\nproviders:\n  - name: sandbox\n    kind: sandbox\n    interval: 20s\n"
        f"    options: {{control_url: 'http://127.0.0.1:{port}'}}\n"
        "optimize: {idle_min_observed: 30s}\n"
    )
    return str(path)


def _collect_then_optimize(sandbox: SandboxThread, tmp_path: Path) -> OptimizeSummary:
    assert sandbox.fleet is not None
    config = _config(tmp_path, sandbox.fleet.control.port)
    for k in range(COLLECTIONS):
        if k:
            time.sleep(GAP_SECONDS)
        summary = collect_flow(config_path=config)
        assert summary.results[0].status == "ok", summary.results[0]
    return optimize_flow(config_path=config, use_llm=False)


def _inventory(sandbox: SandboxThread) -> dict[str, dict[str, Any]]:
    assert sandbox.fleet is not None
    rows = sandbox.call(sandbox.fleet.inventory)
    return {r["deployment"]: r for r in rows}


def _recommendations() -> list[Recommendation]:
    state = load_runtime(None).open_state()
    try:
        with state.session(readonly=True) as session:
            return list(session.exec(select(Recommendation)).all())
    finally:
        state.close()


def _planned(kind: str, target: str) -> Recommendation:
    found = [
        r for r in _recommendations()
        if r.kind == kind and r.target == target and r.status == "planned"
    ]  # fmt: skip
    assert found, f"no planned {kind} for {target}"
    return found[-1]


def test_default_fleet_gets_the_four_planted_proposals(
    prefect_harness: None, tmp_path: Path
) -> None:
    with sandbox_thread(load_fleet("default")) as sandbox:
        summary = _collect_then_optimize(sandbox, tmp_path)
        inventory = _inventory(sandbox)
    targets = {p["target"] for p in summary.plans}
    assert {"legacy-7b", "code-3b", "rag-8b", "chat-8b"} <= targets, summary.plans

    idle = _planned("idle_shutdown", "legacy-7b")
    price = inventory["legacy-7b"]["price_usd_per_hour"]
    assert idle.change["replicas"] == 0
    assert idle.expected_deltas["cost_usd_per_month"]["value"] == pytest.approx(
        -price * HOURS_PER_MONTH
    )

    resize = _planned("right_size", "code-3b")
    a100 = inventory["code-3b"]["price_usd_per_hour"]
    cheaper = quote(resize.change["gpu"], 1, "gcp", "us-central1", "on-demand").usd_per_hour
    assert resize.change["gpu"] == "L4"
    assert resize.expected_deltas["cost_usd_per_month"]["value"] == pytest.approx(
        -(a100 - cheaper) * HOURS_PER_MONTH
    )

    relief = [
        r for r in _recommendations()
        if r.target == "rag-8b" and r.agent == "performance" and r.status == "planned"
    ]  # fmt: skip
    assert relief, "no KV-cache / batching relief for rag-8b"
    args = relief[-1].change["engine_args"]
    assert relief[-1].evidence["bottleneck"] == "kv_pressure"
    assert args.get("max_num_seqs", 128) < 128 or args.get("kv_cache_dtype") == "fp8"
    # The new batch limit is one the KV cache holds at the observed mean context.
    assert relief[-1].evidence["sequences_kv_holds_after"] >= args.get("max_num_seqs", 128)
    preempted = relief[-1].expected_deltas.get("preemptions_per_s")
    assert preempted is None or preempted["value"] < 0

    spot = _planned("spot_migration", "chat-8b")
    assert spot.change["keep_on_demand"] >= 1  # never the last on-demand replica
    spot_price = quote("L4", 1, "aws", "us-east-1", "spot").usd_per_hour
    assert spot.evidence["spot_price_usd_per_hour"] == pytest.approx(spot_price)
    per_replica = inventory["chat-8b"]["price_usd_per_hour"] - spot_price
    moved = spot.change["replicas_to_spot"]
    assert spot.expected_deltas["cost_usd_per_month"]["value"] == pytest.approx(
        -per_replica * moved * HOURS_PER_MONTH
    )

    state = load_runtime(None).open_state()
    try:
        with state.session(readonly=True) as session:
            plans = session.exec(select(Plan)).all()
    finally:
        state.close()
    assert len(plans) == len(summary.plans)
    assert {p.status for p in plans} == {PlanStatus.PENDING_APPROVAL}


def test_healthy_fleet_gets_nothing_of_consequence(prefect_harness: None, tmp_path: Path) -> None:
    with sandbox_thread(load_fleet("healthy")) as sandbox:
        summary = _collect_then_optimize(sandbox, tmp_path)
    assert summary.plans == [], summary.plans
