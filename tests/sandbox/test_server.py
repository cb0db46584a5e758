"""Sandbox servers over real sockets: the OpenAI endpoints, /metrics, the admin and
control APIs, spot interruptions and scaling.

Each test starts a small fleet in its own event loop (``asyncio.run``) and talks to it
with httpx, as the collector, the load generator and the actuator will.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from optiinfra.sandbox.fleet import Fleet
from optiinfra.sandbox.quality import QualityConfig, bundled_items, error_probability
from optiinfra.sandbox.spec import DeploymentSpec, FleetSpec, SandboxSettings
from optiinfra.scoring import exact_match

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def _deployment(**overrides: Any) -> DeploymentSpec:
    base: dict[str, Any] = {
        "name": "chat",
        "model": MODEL,
        "gpu": "L4",
        "engine_args": {"max_model_len": 8192},
    }
    base.update(overrides)
    return DeploymentSpec.model_validate(base)


@asynccontextmanager
async def running(*deployments: DeploymentSpec, **settings: Any) -> AsyncIterator[Fleet]:
    spec = FleetSpec(sandbox=SandboxSettings(noise=0.0, **settings), deployments=list(deployments))
    fleet = Fleet(spec)
    await fleet.start()
    try:
        yield fleet
    finally:
        await fleet.stop()


def _url(fleet: Fleet, deployment: str = "chat", replica: int = 0) -> str:
    return fleet.endpoint(fleet.servers[deployment][replica])


def _control(fleet: Fleet) -> str:
    assert fleet.control is not None
    return f"http://127.0.0.1:{fleet.control.port}"


def test_completion_and_chat_answer_in_openai_format_with_usage() -> None:
    async def main() -> tuple[dict, dict]:  # type: ignore[type-arg]
        async with running(_deployment()) as fleet, httpx.AsyncClient() as client:
            url = _url(fleet)
            words = " ".join(["token"] * 120)
            completion = await client.post(
                f"{url}/v1/completions",
                json={"model": MODEL, "prompt": words, "max_tokens": 12, "min_tokens": 12},
            )
            chat = await client.post(
                f"{url}/v1/chat/completions",
                json={
                    "model": MODEL,
                    "messages": [
                        {"role": "system", "content": "Answer briefly."},
                        {"role": "user", "content": "What is the chemical symbol for gold?"},
                    ],
                },
            )
            return completion.json(), chat.json()

    completion, chat = asyncio.run(main())
    assert completion["object"] == "text_completion"
    assert completion["id"].startswith("cmpl-")
    assert completion["usage"] == {
        "prompt_tokens": 120,
        "completion_tokens": 12,
        "total_tokens": 132,
    }
    assert len(completion["choices"][0]["text"].split()) == 12
    assert completion["choices"][0]["finish_reason"] == "length"
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["role"] == "assistant"
    assert chat["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"model": "other/model", "prompt": "hi"}, 404, "does not exist"),
        ({"prompt": "hi"}, 400, "'model'"),
        ({"model": MODEL, "prompt": 3}, 400, "'prompt'"),
        ({"model": MODEL, "prompt": "hi", "max_tokens": 0}, 400, "max_tokens"),
        ({"model": MODEL, "prompt": "w " * 9000, "max_tokens": 10}, 400, "maximum context"),
    ],
)
def test_bad_requests_get_vllm_style_errors(body: dict, status: int, fragment: str) -> None:  # type: ignore[type-arg]
    async def main() -> httpx.Response:
        async with running(_deployment()) as fleet, httpx.AsyncClient() as client:
            return await client.post(f"{_url(fleet)}/v1/completions", json=body)

    response = asyncio.run(main())
    assert response.status_code == status
    error = response.json()
    assert error["object"] == "error" and error["code"] == status
    assert fragment in error["message"]


def test_streaming_sends_one_event_per_token_then_usage_and_done() -> None:
    async def main() -> list[str]:
        async with running(_deployment()) as fleet, httpx.AsyncClient() as client:
            body = {
                "model": MODEL,
                "prompt": "a b c d",
                "max_tokens": 6,
                "min_tokens": 6,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            async with client.stream("POST", f"{_url(fleet)}/v1/completions", json=body) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                return [line async for line in r.aiter_lines() if line]

    lines = asyncio.run(main())
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    text_events = [e for e in events if e["choices"] and e["choices"][0]["text"]]
    assert len(text_events) == 6
    assert events[-2]["choices"][0]["finish_reason"] == "length"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 6


def test_metrics_parse_and_count_what_was_served() -> None:
    async def main() -> str:
        async with running(_deployment()) as fleet, httpx.AsyncClient() as client:
            url = _url(fleet)
            await asyncio.gather(
                *[
                    client.post(
                        f"{url}/v1/completions",
                        json={
                            "model": MODEL,
                            "prompt": "x " * 50,
                            "max_tokens": 8,
                            "min_tokens": 8,
                        },
                    )
                    for _ in range(5)
                ]
            )
            return (await client.get(f"{url}/metrics")).text

    text = asyncio.run(main())
    assert text.startswith("# OptiInfra sandbox")  # a comment: parsers skip it
    families = {f.name: f for f in text_string_to_metric_families(text)}
    success = families["vllm:request_success"]
    assert success.type == "counter"
    finished = {
        s.labels["finished_reason"]: s.value for s in success.samples if s.name.endswith("_total")
    }
    assert finished["length"] == 5
    prompt = [s for s in families["vllm:prompt_tokens"].samples if s.name.endswith("_total")]
    assert prompt[0].value == 250
    ttft_count = [
        s for s in families["vllm:time_to_first_token_seconds"].samples if s.name.endswith("_count")
    ]
    assert ttft_count[0].value == 5
    assert families["vllm:num_requests_running"].samples[0].value == 0


def test_an_admin_change_changes_behaviour_within_seconds() -> None:
    async def e2e(client: httpx.AsyncClient, url: str) -> float:
        before = (await client.get(f"{url}/admin/truth")).json()["finished"]
        await client.post(
            f"{url}/v1/completions",
            json={"model": MODEL, "prompt": "y " * 64, "max_tokens": 20, "min_tokens": 20},
        )
        truth = (await client.get(f"{url}/admin/truth?window=0.5")).json()
        assert truth["finished"] == before + 1
        return truth["e2e_seconds"]["p50"]

    async def main() -> tuple[float, float, dict, dict]:  # type: ignore[type-arg]
        async with running(_deployment()) as fleet, httpx.AsyncClient() as client:
            url = _url(fleet)
            slow = await e2e(client, url)
            old = (await client.get(f"{url}/admin/config")).json()
            changed = await client.patch(
                f"{url}/admin/config", json={"engine_args": {"quantization": "fp8"}}
            )
            assert changed.status_code == 200
            fast = await e2e(client, url)
            return slow, fast, old, changed.json()

    slow, fast, old, new = asyncio.run(main())
    assert new["spec"]["engine_args"]["quantization"] == "fp8"
    assert new["config_id"] != old["config_id"]
    assert new["kv_cache_tokens"] > old["kv_cache_tokens"]  # half the weight bytes
    assert fast < 0.75 * slow


def test_admin_rejects_an_invalid_change_and_keeps_the_old_configuration() -> None:
    async def main() -> tuple[httpx.Response, dict]:  # type: ignore[type-arg]
        async with running(_deployment()) as fleet, httpx.AsyncClient() as client:
            url = _url(fleet)
            bad = await client.patch(
                f"{url}/admin/config", json={"engine_args": {"max_num_seqs": -1}}
            )
            return bad, (await client.get(f"{url}/admin/config")).json()

    bad, config = asyncio.run(main())
    assert bad.status_code == 400 and "max_num_seqs" in bad.json()["error"]
    assert config["spec"]["engine_args"]["max_num_seqs"] == 256


def test_degraded_quantization_lowers_measured_accuracy_by_the_documented_amount() -> None:
    items = bundled_items()
    rng = random.Random(5)
    questions = [rng.choice(items) for _ in range(400)]

    async def accuracy(fleet: Fleet, name: str, client: httpx.AsyncClient) -> float:
        url = _url(fleet, name)
        limit = asyncio.Semaphore(64)

        async def ask(item) -> float:  # type: ignore[no-untyped-def]
            async with limit:
                r = await client.post(
                    f"{url}/v1/chat/completions",
                    json={
                        "model": MODEL,
                        "max_tokens": 16,
                        "messages": [{"role": "user", "content": item.question}],
                    },
                )
            text = r.json()["choices"][0]["message"]["content"]
            return exact_match(text, item.answer, item.aliases)

        scores = await asyncio.gather(*[ask(item) for item in questions])
        return sum(scores) / len(scores)

    async def main() -> tuple[float, float]:
        healthy = _deployment(name="healthy", gpu="H100")
        degraded = _deployment(
            name="degraded", gpu="H100", engine_args={"max_model_len": 8192, "quantization": "int4"}
        )
        async with running(healthy, degraded) as fleet, httpx.AsyncClient() as client:
            return (
                await accuracy(fleet, "healthy", client),
                await accuracy(fleet, "degraded", client),
            )

    healthy_acc, degraded_acc = asyncio.run(main())
    n = len(questions)
    for measured, quantization in ((healthy_acc, "none"), (degraded_acc, "int4")):
        p = error_probability(QualityConfig(MODEL, quantization=quantization))
        assert abs(measured - (1 - p)) < 4 * math.sqrt(p * (1 - p) / n), (quantization, measured)
    assert degraded_acc < healthy_acc


def test_dcgm_shows_preallocated_memory_per_gpu_and_activity_under_load() -> None:
    async def main() -> tuple[str, str]:
        d = _deployment(
            gpu="A100-80GB",
            cloud="gcp",
            region="us-central1",
            engine_args={"tensor_parallel_size": 2, "max_model_len": 8192},
        )
        async with running(d) as fleet, httpx.AsyncClient() as client:
            server = fleet.servers["chat"][0]
            dcgm = f"http://127.0.0.1:{server.dcgm_port}/metrics"
            idle = (await client.get(dcgm)).text
            await client.post(
                f"{_url(fleet)}/v1/completions",
                json={"model": MODEL, "prompt": "z " * 2000, "max_tokens": 64, "min_tokens": 64},
            )
            return idle, (await client.get(dcgm)).text

    def series(text: str, name: str) -> list[float]:
        for family in text_string_to_metric_families(text):
            if family.name == name:
                return [s.value for s in family.samples]
        raise AssertionError(f"{name} missing")

    idle, busy = asyncio.run(main())
    assert len(series(idle, "DCGM_FI_DEV_FB_USED")) == 2  # one series per GPU (TP=2)
    assert all(v > 0.85 * 80 * 1024 for v in series(idle, "DCGM_FI_DEV_FB_USED"))
    assert series(idle, "DCGM_FI_DEV_GPU_UTIL") == [0, 0]
    assert min(series(busy, "DCGM_FI_DEV_GPU_UTIL")) > 0
    assert min(series(busy, "DCGM_FI_DEV_POWER_USAGE")) > max(
        series(idle, "DCGM_FI_DEV_POWER_USAGE")
    )


def test_spot_interruption_closes_the_port_until_the_server_restarts() -> None:
    async def main() -> tuple[str, int, int]:
        spot = _deployment(market="spot")
        async with running(spot, spot_restart_seconds=0.5) as fleet, httpx.AsyncClient() as client:
            url, control = _url(fleet), _control(fleet)
            r = await client.post(f"{control}/sandbox/servers/chat-0/interrupt")
            assert r.status_code == 200
            try:
                await client.get(f"{url}/health")
                refused = "answered"
            except httpx.ConnectError:
                refused = "refused"
            inventory = (await client.get(f"{control}/sandbox/inventory")).json()
            assert inventory["instances"][0]["state"] == "interrupted"
            await asyncio.sleep(1.0)
            health = (await client.get(f"{url}/health")).status_code
            again = (
                await client.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "q"})
            ).status_code
            return refused, health, again

    assert asyncio.run(main()) == ("refused", 200, 200)


def test_control_api_scales_a_deployment_and_prices_every_instance() -> None:
    async def main() -> tuple[dict, dict, dict]:  # type: ignore[type-arg]
        async with running(_deployment(replicas=1)) as fleet, httpx.AsyncClient() as client:
            control = _control(fleet)
            up = (
                await client.patch(
                    f"{control}/sandbox/deployments/chat", json={"replicas": 3, "market": "spot"}
                )
            ).json()
            inventory = (await client.get(f"{control}/sandbox/inventory")).json()
            new_url = up["deployments"][0]["servers"][2]["url"]
            assert (await client.get(f"{new_url}/health")).status_code == 200
            down = (
                await client.patch(f"{control}/sandbox/deployments/chat", json={"replicas": 0})
            ).json()
            missing = await client.patch(f"{control}/sandbox/deployments/nope", json={})
            assert missing.status_code == 404
            return up, inventory, down

    up, inventory, down = asyncio.run(main())
    assert len(up["deployments"][0]["servers"]) == 3
    rows = inventory["instances"]
    assert len(rows) == 3 and {r["market"] for r in rows} == {"spot"}
    assert all(
        r["instance_type"] == "g6.xlarge" and 0 < r["price_usd_per_hour"] < 0.8048 for r in rows
    )  # spot below the on-demand price of the table
    assert down["deployments"][0]["servers"] == []


@pytest.mark.parametrize(
    ("engine", "family"),
    [("sglang", "sglang:num_running_reqs"), ("tgi", "tgi_request_success")],
)
def test_sglang_and_tgi_servers_speak_their_own_metric_format(engine: str, family: str) -> None:
    async def main() -> httpx.Response:
        async with running(_deployment(engine=engine)) as fleet, httpx.AsyncClient() as client:
            url = _url(fleet)
            await client.post(
                f"{url}/v1/completions", json={"model": MODEL, "prompt": "p " * 20, "max_tokens": 4}
            )
            return await client.get(f"{url}/metrics")

    response = asyncio.run(main())
    assert response.headers["x-optiinfra-sandbox"] == "simulated"
    assert len(response.headers["x-optiinfra-config-id"]) == 12
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert family in names
    assert not any(name.startswith("vllm:") for name in names)


def test_control_api_refuses_what_a_running_deployment_cannot_change() -> None:
    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with running(_deployment()) as fleet, httpx.AsyncClient() as client:
            control = _control(fleet)
            region = await client.patch(
                f"{control}/sandbox/deployments/chat", json={"region": "eu-west-1"}
            )
            window = await client.get(f"{control}/sandbox/truth?window=abc")
            no_price = await client.patch(f"{_url(fleet)}/admin/config", json={"gpu": "A10"})
            still = (await client.get(f"{_url(fleet)}/admin/config")).json()
            assert still["spec"]["gpu"] == "L4"
            return region, window, no_price

    region, window, no_price = asyncio.run(main())
    assert region.status_code == 400 and "region" in region.json()["error"]
    assert window.status_code == 400 and "window" in window.json()["error"]
    assert no_price.status_code == 400 and "A10" in no_price.json()["error"]  # aws has no A10


def test_a_fleet_asking_more_context_than_the_model_has_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from optiinfra.errors import ConfigError
    from optiinfra.sandbox.fleet import load_fleet

    path = tmp_path / "fleet.yaml"
    path.write_text(
        "deployments:\n"
        "  - name: old\n"
        "    model: meta-llama/Llama-2-7b-hf\n"
        "    gpu: A100-80GB\n"
        "    cloud: gcp\n"
        "    region: us-central1\n"
        "    engine_args: {max_model_len: 16384}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_fleet(path)
    assert "max_model_len" in str(caught.value) and "4096" in str(caught.value)
