"""The sandbox actuator against a real sandbox fleet (in a thread), over HTTP only: canary
servers per step, per-server configuration read back, idempotent steps, revert from a
stored baseline by a fresh actuator, spot migration of some replicas, scaling, promotion,
and errors that name the deployment and endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from optiinfra.sandbox.spec import DeploymentSpec, FleetSpec, SandboxSettings
from providers.actuation import (
    ActuationError,
    ActuatorConfig,
    Baseline,
    Change,
    Target,
    UnsupportedChange,
    build_actuator,
)
from providers.sandbox.actuator import SandboxActuator
from tests.e2e.sandbox_thread import SandboxThread, sandbox_thread

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TARGET = Target(provider="sandbox", deployment="chat")
TUNE = Change.model_validate({"engine_args": {"max_num_seqs": 32}, "kv_cache_dtype": "fp8"})


def _fleet() -> FleetSpec:
    chat = DeploymentSpec.model_validate(
        {"name": "chat", "model": MODEL, "gpu": "L4", "replicas": 4, "dcgm": False,
         "engine_args": {"max_model_len": 4096, "max_num_seqs": 64}}
    )  # fmt: skip
    other = DeploymentSpec.model_validate(
        {"name": "other", "model": MODEL, "gpu": "L4", "dcgm": False,
         "engine_args": {"max_model_len": 4096}}
    )  # fmt: skip
    return FleetSpec(sandbox=SandboxSettings(seed=3), deployments=[chat, other])


@pytest.fixture
def sandbox() -> Iterator[tuple[SandboxActuator, SandboxThread]]:
    with sandbox_thread(_fleet(), load=False) as runner:
        assert runner.fleet is not None and runner.fleet.control is not None
        url = f"http://127.0.0.1:{runner.fleet.control.port}"
        actuator = build_actuator(ActuatorConfig(kind="sandbox", options={"control_url": url}))
        assert isinstance(actuator, SandboxActuator)
        yield actuator, runner
        asyncio.run(actuator.aclose())


def servers(runner: SandboxThread, deployment: str = "chat") -> list[dict[str, Any]]:
    """Each server's own /admin/config, read straight from the sandbox."""
    assert runner.fleet is not None
    urls = runner.call(lambda: [runner.fleet.endpoint(s) for s in runner.fleet.servers[deployment]])
    return [httpx.get(f"{u}/admin/config").json() for u in urls]


def test_steps_switch_ceil_f_n_servers_and_read_back_per_server(
    sandbox: tuple[SandboxActuator, SandboxThread],
) -> None:
    actuator, runner = sandbox

    async def rollout() -> tuple[Baseline, list[Any]]:
        baseline = await actuator.snapshot(TARGET)
        steps = [await actuator.apply(TARGET, TUNE, f, baseline) for f in (0.1, 0.5, 0.5, 1.0)]
        return baseline, steps

    baseline, (ten, fifty, again, full) = asyncio.run(rollout())
    assert baseline.replicas == 4 and len(baseline.units) == 4
    assert baseline.config["engine_args"]["max_num_seqs"] == 64
    assert (ten.changed, fifty.changed, again.changed, full.changed) == (1, 1, 0, 2)
    assert ten.achieved_fraction == 0.25 and fifty.achieved_fraction == 0.5
    assert full.done and full.running.canary_share == 1.0
    canary = fifty.running.variant("canary")
    base = fifty.running.variant("baseline")
    assert canary is not None and base is not None
    assert canary.members == ["chat-0", "chat-1"] and base.members == ["chat-2", "chat-3"]
    assert canary.config["engine_args"]["kv_cache_dtype"] == "fp8"
    assert canary.config_id != base.config_id  # the sandbox's own config ids differ
    configs = servers(runner)
    assert {c["spec"]["engine_args"]["max_num_seqs"] for c in configs} == {32}
    assert {c["spec"]["engine_args"]["max_model_len"] for c in configs} == {4096}
    assert servers(runner, "other")[0]["spec"]["engine_args"]["max_num_seqs"] == 256


def test_a_fresh_actuator_reverts_from_the_stored_baseline(
    sandbox: tuple[SandboxActuator, SandboxThread],
) -> None:
    actuator, runner = sandbox
    before = [c["config_id"] for c in servers(runner)]
    stored = asyncio.run(actuator.snapshot(TARGET)).model_dump_json()
    asyncio.run(actuator.apply(TARGET, TUNE, 1.0, Baseline.model_validate_json(stored)))
    lowered = asyncio.run(actuator.apply(TARGET, TUNE, 0.25, Baseline.model_validate_json(stored)))
    assert lowered.changed == 3 and lowered.achieved_fraction == 0.25
    url = actuator.options.base_url
    fresh = build_actuator(ActuatorConfig(kind="sandbox", options={"control_url": url}))
    baseline = Baseline.model_validate_json(stored)
    first = asyncio.run(fresh.revert(TARGET, baseline))
    second = asyncio.run(fresh.revert(TARGET, baseline))
    asyncio.run(fresh.aclose())
    assert first.done and first.changed == 1 and first.running.canary_share == 0
    assert second.done and second.changed == 0
    assert [c["config_id"] for c in servers(runner)] == before


def test_spot_migration_moves_only_replicas_to_spot(
    sandbox: tuple[SandboxActuator, SandboxThread],
) -> None:
    actuator, runner = sandbox
    spot = Change.model_validate({"market": "spot", "replicas_to_spot": 2, "keep_on_demand": 2,
                                  "instance_type": "g6.xlarge"})  # fmt: skip
    baseline = asyncio.run(actuator.snapshot(TARGET))
    status = asyncio.run(actuator.apply(TARGET, spot, 1.0, baseline))
    assert [c["spec"]["market"] for c in servers(runner)] == [
        "spot",
        "spot",
        "on-demand",
        "on-demand",
    ]
    assert status.achieved_fraction == 0.5 and "instance_type not sent" in status.detail
    inventory = httpx.get(f"{actuator.options.base_url}/sandbox/inventory").json()
    markets = {r["instance_id"]: r["market"] for r in inventory["instances"]}
    assert markets["chat-0"] == "spot" and markets["chat-3"] == "on-demand"


def test_a_replica_change_scales_by_the_fraction_and_reverts(
    sandbox: tuple[SandboxActuator, SandboxThread],
) -> None:
    actuator, runner = sandbox
    baseline = asyncio.run(actuator.snapshot(TARGET))
    down = Change.model_validate({"replicas": 2, "from_replicas": 4})
    half = asyncio.run(actuator.apply(TARGET, down, 0.5, baseline))
    assert len(servers(runner)) == 3 and half.achieved_fraction == 0.5
    asyncio.run(actuator.apply(TARGET, down, 1.0, baseline))
    assert len(servers(runner)) == 2
    reverted = asyncio.run(actuator.revert(TARGET, baseline))
    assert len(servers(runner)) == 4 and reverted.done


def test_promote_makes_new_servers_run_the_change(
    sandbox: tuple[SandboxActuator, SandboxThread],
) -> None:
    actuator, runner = sandbox
    baseline = asyncio.run(actuator.snapshot(TARGET))
    asyncio.run(actuator.apply(TARGET, TUNE, 1.0, baseline))
    asyncio.run(actuator.promote(TARGET, TUNE, baseline))
    url = f"{actuator.options.base_url}/sandbox/deployments/chat"
    httpx.patch(url, content=json.dumps({"replicas": 5})).raise_for_status()
    assert servers(runner)[-1]["spec"]["engine_args"]["max_num_seqs"] == 32


def test_errors_name_the_deployment_and_endpoint(
    sandbox: tuple[SandboxActuator, SandboxThread],
) -> None:
    actuator, _ = sandbox
    with pytest.raises(ActuationError, match=r"nope.*/sandbox: no such sandbox deployment; known"):
        asyncio.run(actuator.snapshot(Target(provider="sandbox", deployment="nope")))
    baseline = asyncio.run(actuator.snapshot(TARGET))
    bad = Change.model_validate({"gpu": "TPU-v9"})
    with pytest.raises(ActuationError, match=r"/admin/config: PUT answered HTTP 400: .*gpu"):
        asyncio.run(actuator.apply(TARGET, bad, 0.25, baseline))
    with pytest.raises(UnsupportedChange, match="image: sandbox servers are simulated"):
        asyncio.run(actuator.apply(TARGET, Change(image="x"), 0.25, baseline))
    dead = build_actuator(
        ActuatorConfig(kind="sandbox", options={"control_url": "http://127.0.0.1:9"})
    )
    with pytest.raises(ActuationError, match=r"127.0.0.1:9/sandbox: .*connection refused"):
        asyncio.run(dead.read_back(TARGET))
    asyncio.run(dead.aclose())
