"""The kubernetes actuator through the official client against a local server that
speaks the API server's wire format (tests/providers/kube_standin.py): the canary
Deployment, the split by replica counts, idempotent steps, revert from a stored
baseline in a fresh actuator, promotion, the pod-template mapping, and clear errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from providers.actuation import (
    ActuationError,
    ActuatorConfig,
    Baseline,
    Change,
    Target,
    UnsupportedChange,
    build_actuator,
)
from providers.kubernetes import KubernetesActuator, PodMapping, apply_change
from providers.kubernetes.podspec import set_flag
from tests.providers.kube_standin import KubeState, kube_standin

NS = "inference"
TOKEN = "k8s-test-token-123"
TARGET = Target(tenant="acme", provider="prod", deployment="chat")
TUNE = Change.model_validate({"engine_args": {"max_num_seqs": 256, "enable_prefix_caching": False}})


def stable_deployment(replicas: int = 10) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "chat", "labels": {"app": "chat"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "chat"}},
            "template": {
                "metadata": {"labels": {"app": "chat"}},
                "spec": {
                    "containers": [
                        {"name": "sidecar", "image": "envoy:1.30"},
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:v0.11.0",
                            "args": ["--model", "meta-llama/Llama-3.1-8B-Instruct",
                                     "--max-num-seqs", "128", "--enable-prefix-caching"],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        },
                    ]
                },
            },
        },
    }  # fmt: skip


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[KubernetesActuator, KubeState]]:
    monkeypatch.setenv("K8S_TOKEN", TOKEN)
    with kube_standin(token=TOKEN) as (url, state):
        state.add(NS, stable_deployment())
        config = ActuatorConfig(
            kind="kubernetes",
            options={"host": url, "namespace": NS, "container": "vllm",
                     "gpu_label_values": {"L4": "NVIDIA-L4"}},
            credentials={"token": "K8S_TOKEN"},
        )  # fmt: skip
        actuator = build_actuator(config)
        assert isinstance(actuator, KubernetesActuator)
        yield actuator, state
        asyncio.run(actuator.aclose())


def replicas(state: KubeState, name: str) -> int | None:
    obj = state.get(NS, name)
    return None if obj is None else obj["spec"]["replicas"]


def test_steps_move_the_split_by_replica_counts(cluster: tuple[KubernetesActuator, KubeState]):
    actuator, state = cluster

    async def rollout() -> list[Any]:
        baseline = await actuator.snapshot(TARGET)
        return [await actuator.apply(TARGET, TUNE, f, baseline) for f in (0.1, 0.5, 1.0)]

    ten, fifty, full = asyncio.run(rollout())
    assert (ten.running.variant("canary").replicas, ten.running.variant("baseline").replicas) == (
        1,
        9,
    )
    assert ten.done and ten.achieved_fraction == pytest.approx(0.1) and ten.changed == 2
    assert fifty.achieved_fraction == pytest.approx(0.5)
    assert (replicas(state, "chat-canary"), replicas(state, "chat")) == (10, 0)
    assert full.done and full.running.canary_share == 1.0
    canary = state.get(NS, "chat-canary")
    assert canary is not None
    containers = {c["name"]: c for c in canary["spec"]["template"]["spec"]["containers"]}
    args = containers["vllm"]["args"]
    assert "--max-num-seqs=256" in args and "128" not in args
    assert "--no-enable-prefix-caching" in args and "--enable-prefix-caching" not in args
    assert "args" not in containers["sidecar"]  # only the engine container changes
    # the canary's pods are the Service's (app=chat) but its selector is its own
    track = {"app": "chat", "optiinfra.io/track": "canary"}
    assert canary["spec"]["selector"]["matchLabels"] == track
    assert canary["spec"]["template"]["metadata"]["labels"] == track
    assert json.loads(canary["metadata"]["annotations"]["optiinfra.io/change"]) == TUNE.as_dict()
    # the stable one's template was never touched
    stable = state.get(NS, "chat")
    assert stable is not None and "--max-num-seqs" in stable["spec"]["template"]["spec"][
        "containers"][1]["args"]  # fmt: skip
    writes = [s for s in state.seen if s.method in ("PATCH", "POST", "PUT", "DELETE")]
    assert {s.content_type for s in writes if s.method == "PATCH"} == {
        "application/merge-patch+json"
    }
    assert all(s.authorization == f"Bearer {TOKEN}" for s in state.seen)


def test_repeating_a_step_changes_nothing(cluster: tuple[KubernetesActuator, KubeState]) -> None:
    actuator, state = cluster

    async def twice() -> tuple[Any, Any, int]:
        baseline = await actuator.snapshot(TARGET)
        first = await actuator.apply(TARGET, TUNE, 0.5, baseline)
        writes = len([s for s in state.seen if s.method != "GET"])
        second = await actuator.apply(TARGET, TUNE, 0.5, baseline)
        return first, second, writes

    first, second, writes = asyncio.run(twice())
    assert first.changed == 2 and second.changed == 0
    assert len([s for s in state.seen if s.method != "GET"]) == writes
    assert first.idempotency_key == second.idempotency_key
    assert (replicas(state, "chat-canary"), replicas(state, "chat")) == (5, 5)


def test_a_fresh_actuator_reverts_from_the_stored_baseline(
    cluster: tuple[KubernetesActuator, KubeState],
) -> None:
    actuator, state = cluster
    stored = asyncio.run(actuator.snapshot(TARGET)).model_dump_json()
    asyncio.run(actuator.apply(TARGET, TUNE, 0.5, Baseline.model_validate_json(stored)))
    # the process that ran the rollout is gone: a new actuator, the stored baseline
    again = KubernetesActuator(actuator.options, api_client=actuator.api_client)
    baseline = Baseline.model_validate_json(stored)
    first = asyncio.run(again.revert(TARGET, baseline))
    second = asyncio.run(again.revert(TARGET, baseline))
    assert state.get(NS, "chat-canary") is None and replicas(state, "chat") == 10
    assert first.done and first.changed == 2 and first.running.canary_share == 0
    assert second.done and second.changed == 0


def test_a_changed_step_replaces_the_canary(cluster: tuple[KubernetesActuator, KubeState]):
    actuator, state = cluster
    other = Change.model_validate({"engine_args": {"max_num_seqs": 64}})

    async def run() -> Any:
        baseline = await actuator.snapshot(TARGET)
        await actuator.apply(TARGET, TUNE, 0.1, baseline)
        return await actuator.apply(TARGET, other, 0.1, baseline)

    status = asyncio.run(run())
    canary = state.get(NS, "chat-canary")
    assert canary is not None and status.done
    args = canary["spec"]["template"]["spec"]["containers"][1]["args"]
    assert "--max-num-seqs=64" in args and "--enable-prefix-caching" in args  # from baseline
    assert [s.method for s in state.seen if s.path.endswith("chat-canary")].count("PUT") == 1


def test_instance_change_maps_to_node_selector_gpu_and_replicas(
    cluster: tuple[KubernetesActuator, KubeState],
) -> None:
    actuator, state = cluster
    resize = Change.model_validate(
        {"gpu": "L4", "gpu_count": 2, "market": "spot", "instance_type": "g6.12xlarge",
         "replicas": 4, "engine_args": {"tensor_parallel_size": 2}}
    )  # fmt: skip

    async def run() -> list[Any]:
        baseline = await actuator.snapshot(TARGET)
        return [await actuator.apply(TARGET, resize, f, baseline) for f in (0.5, 1.0)]

    half, full = asyncio.run(run())
    assert (half.running.variant("canary").replicas, half.running.variant("baseline").replicas) == (
        2, 5)  # fmt: skip
    assert (replicas(state, "chat-canary"), replicas(state, "chat")) == (4, 0)
    pod = state.get(NS, "chat-canary")["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["nodeSelector"] == {
        "nvidia.com/gpu.product": "NVIDIA-L4",
        "karpenter.sh/capacity-type": "spot",
        "node.kubernetes.io/instance-type": "g6.12xlarge",
    }
    assert pod["containers"][1]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert full.done


def test_spot_migration_covers_only_replicas_to_spot(
    cluster: tuple[KubernetesActuator, KubeState],
) -> None:
    actuator, state = cluster
    spot = Change.model_validate({"market": "spot", "replicas_to_spot": 6, "keep_on_demand": 4})
    baseline = asyncio.run(actuator.snapshot(TARGET))
    status = asyncio.run(actuator.apply(TARGET, spot, 1.0, baseline))
    assert (replicas(state, "chat-canary"), replicas(state, "chat")) == (6, 4)
    assert status.achieved_fraction == pytest.approx(0.6)


def test_a_replica_count_alone_scales_the_stable_deployment(
    cluster: tuple[KubernetesActuator, KubeState],
) -> None:
    actuator, state = cluster
    baseline = asyncio.run(actuator.snapshot(TARGET))
    down = Change.model_validate({"replicas": 0, "from_replicas": 10})
    status = asyncio.run(actuator.apply(TARGET, down, 0.5, baseline))
    assert replicas(state, "chat") == 5 and state.get(NS, "chat-canary") is None
    assert status.achieved_fraction == pytest.approx(0.5)
    asyncio.run(actuator.revert(TARGET, baseline))
    assert replicas(state, "chat") == 10


def test_promote_makes_the_change_the_stable_template_and_revert_undoes_it(
    cluster: tuple[KubernetesActuator, KubeState],
) -> None:
    actuator, state = cluster

    async def run() -> tuple[Any, Any, Any]:
        baseline = await actuator.snapshot(TARGET)
        await actuator.apply(TARGET, TUNE, 1.0, baseline)
        promoted = await actuator.promote(TARGET, TUNE, baseline)
        again = await actuator.promote(TARGET, TUNE, baseline)
        return baseline, promoted, again

    baseline, promoted, again = asyncio.run(run())
    stable = state.get(NS, "chat")
    assert stable is not None and state.get(NS, "chat-canary") is None
    assert stable["spec"]["replicas"] == 10 and stable["spec"]["selector"] == {
        "matchLabels": {"app": "chat"}
    }
    assert "--max-num-seqs=256" in stable["spec"]["template"]["spec"]["containers"][1]["args"]
    assert promoted.done and again.changed == 0
    # the next rollout starts from the promoted template
    assert asyncio.run(actuator.snapshot(TARGET)).config == stable["spec"]["template"]
    asyncio.run(actuator.revert(TARGET, baseline))
    stable = state.get(NS, "chat")
    assert stable is not None and "--max-num-seqs" in stable["spec"]["template"]["spec"][
        "containers"][1]["args"]  # fmt: skip
    assert "optiinfra.io/change-key" not in (stable["metadata"].get("annotations") or {})


def test_a_canary_not_yet_ready_is_not_done(cluster: tuple[KubernetesActuator, KubeState]):
    actuator, state = cluster
    baseline = asyncio.run(actuator.snapshot(TARGET))
    state.ready = False
    status = asyncio.run(actuator.apply(TARGET, TUNE, 0.1, baseline))
    assert not status.done and "chat-canary 0/1 ready" in status.detail


def test_errors_name_the_deployment_and_endpoint(
    cluster: tuple[KubernetesActuator, KubeState], monkeypatch: pytest.MonkeyPatch
) -> None:
    actuator, _ = cluster
    missing = Target(provider="prod", deployment="nope")
    with pytest.raises(ActuationError, match=r"nope.*deployments/nope.*does not exist"):
        asyncio.run(actuator.snapshot(missing))
    baseline = asyncio.run(actuator.snapshot(TARGET))
    with pytest.raises(UnsupportedChange, match="replicas_by_hour: an hour-of-day schedule"):
        asyncio.run(
            actuator.apply(TARGET, Change.model_validate({"replicas_by_hour": {}}), 1, baseline)
        )
    asyncio.run(actuator.apply(TARGET, TUNE, 0.1, baseline))
    with pytest.raises(ActuationError, match="chat-canary exists from an earlier rollout"):
        asyncio.run(actuator.snapshot(TARGET))
    monkeypatch.setenv("K8S_TOKEN", "wrong")
    url = actuator.endpoint
    wrong = build_actuator(
        ActuatorConfig(kind="k8s", options={"host": url, "namespace": NS},
                       credentials={"token": "K8S_TOKEN"})
    )  # fmt: skip
    with pytest.raises(ActuationError, match="HTTP 401: Unauthorized") as info:
        asyncio.run(wrong.read_back(TARGET))
    assert "wrong" not in str(info.value) and TOKEN not in str(info.value)
    asyncio.run(wrong.aclose())


def test_flags_and_env_mapping() -> None:
    assert set_flag(["--a", "1", "--b=2", "--c"], "--b", 3) == ["--a", "1", "--c", "--b=3"]
    assert set_flag(["--a", "1", "--c"], "--a", None) == ["--c"]
    assert set_flag(["--no-x", "--y", "2"], "--x", True) == ["--y", "2", "--x"]
    template = stable_deployment()["spec"]["template"]
    mapping = PodMapping(container="vllm", engine_args_as="env", env_prefix="VLLM_",
                         arg_names={"max_num_seqs": "MAX_BATCH"})  # fmt: skip
    out = apply_change(template, Change.model_validate(
        {"quantization": "fp8", "engine_args": {"max_num_seqs": 8}}), mapping)  # fmt: skip
    env = {e["name"]: e["value"] for e in out["spec"]["containers"][1]["env"]}
    assert env == {"MAX_BATCH": "8", "VLLM_QUANTIZATION": "fp8"}
    assert "env" not in template["spec"]["containers"][1]  # the input is not modified
    with pytest.raises(ValueError, match="no container named 'engine'"):
        apply_change(template, TUNE, PodMapping(container="engine"))
