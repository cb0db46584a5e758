"""The webhook actuator against a local endpoint that speaks its wire format: the body
and headers of each step, idempotency keys, reading the status back, the token only in
the header, and clear errors on HTTP errors, timeouts and bad status documents."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from optiinfra.errors import OptiInfraError
from providers.actuation import (
    ActuationError,
    ActuatorConfig,
    Baseline,
    Change,
    Target,
    build_actuator,
)
from providers.webhook import WebhookActuator
from tests.providers.webhook_standin import Endpoint, webhook_standin

TOKEN = "whk-secret-0987"
TARGET = Target(tenant="acme", provider="prod", deployment="chat")
CHANGE = Change.model_validate({"kv_cache_dtype": "fp8", "replicas_by_hour": {"0": 2}})


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[WebhookActuator, Endpoint]]:
    monkeypatch.setenv("ROLLOUT_TOKEN", TOKEN)
    with webhook_standin(TOKEN) as (url, ep):
        actuator = build_actuator(
            ActuatorConfig(kind="webhook", options={"url": url, "timeout_seconds": 2,
                                                    "headers": {"X-Team": "inference"}},
                           credentials={"token": "ROLLOUT_TOKEN"})
        )  # fmt: skip
        assert isinstance(actuator, WebhookActuator)
        yield actuator, ep
        asyncio.run(actuator.aclose())


def test_steps_post_the_change_and_read_the_status_back(
    endpoint: tuple[WebhookActuator, Endpoint], caplog: pytest.LogCaptureFixture
) -> None:
    actuator, ep = endpoint
    caplog.set_level(logging.DEBUG)

    async def rollout() -> tuple[Baseline, list]:
        baseline = await actuator.snapshot(TARGET)
        return baseline, [await actuator.apply(TARGET, CHANGE, f, baseline) for f in (0.1, 0.5)]

    baseline, (ten, fifty) = asyncio.run(rollout())
    assert baseline.replicas == 10 and baseline.config == {"image": "vllm:1"}
    first = ep.posts[0]
    assert first["version"] == 1 and first["action"] == "apply"
    assert first["deployment"] == "chat" and first["percent"] == 10
    assert first["target"] == {"tenant": "acme", "provider": "prod", "deployment": "chat"}
    # top-level engine args are normalised; keys the actuator does not know pass through
    assert first["change"] == {
        "engine_args": {"kv_cache_dtype": "fp8"},
        "replicas_by_hour": {"0": 2},
    }
    assert ten.done and ten.achieved_fraction == pytest.approx(0.1)
    assert ten.running.variant("canary").replicas == 1
    assert fifty.running.canary_share == pytest.approx(0.5)
    assert all(h["Authorization"] == f"Bearer {TOKEN}" for h in ep.headers)
    assert all(h["X-Team"] == "inference" for h in ep.headers)
    assert TOKEN not in caplog.text and "chat" in caplog.text


def test_a_repeated_step_carries_the_same_key_and_acts_once(
    endpoint: tuple[WebhookActuator, Endpoint],
) -> None:
    actuator, ep = endpoint
    baseline = asyncio.run(actuator.snapshot(TARGET))
    a = asyncio.run(actuator.apply(TARGET, CHANGE, 0.5, baseline))
    b = asyncio.run(actuator.apply(TARGET, CHANGE, 0.5, baseline))
    assert a.idempotency_key == b.idempotency_key == ep.posts[1]["idempotency_key"]
    assert ep.acted == [a.idempotency_key]
    other = asyncio.run(actuator.apply(TARGET, CHANGE, 1.0, baseline))
    assert other.idempotency_key != a.idempotency_key and ep.percent["chat"] == 100


def test_revert_sends_the_stored_baseline_and_is_harmless_twice(
    endpoint: tuple[WebhookActuator, Endpoint],
) -> None:
    actuator, ep = endpoint
    stored = asyncio.run(actuator.snapshot(TARGET)).model_dump_json()
    asyncio.run(actuator.apply(TARGET, CHANGE, 0.5, Baseline.model_validate_json(stored)))
    baseline = Baseline.model_validate_json(stored)
    first = asyncio.run(actuator.revert(TARGET, baseline))
    second = asyncio.run(actuator.revert(TARGET, baseline))
    assert first.done and second.done and first.running.canary_share == 0
    assert ep.posts[-1]["action"] == "revert" and ep.posts[-1]["percent"] == 0
    assert ep.posts[-1]["change"] is None
    assert ep.posts[-1]["baseline"]["replicas"] == 10
    assert len(ep.acted) == 2  # the apply and one revert


def test_progress_not_finished_is_not_done(endpoint: tuple[WebhookActuator, Endpoint]) -> None:
    actuator, ep = endpoint
    baseline = asyncio.run(actuator.snapshot(TARGET))
    ep.mode = "progressing"
    status = asyncio.run(actuator.apply(TARGET, CHANGE, 0.1, baseline))
    assert not status.done and "progressing" in status.detail


@pytest.mark.parametrize(
    ("mode", "match"),
    [
        ("error", r"deployment acme/prod/chat, endpoint http://127.0.0.1:\d+/optiinfra/rollouts: "
                  r"webhook POST answered HTTP 500: .*exploded handling Bearer \*\*\*"),
        ("slow", r"webhook POST timed out after 0.3 s"),
        ("failed", r"reports the step failed: canary pods crash-looping"),
        ("garbage", r"not a status document: percent: Input should be a valid number"),
    ],
)  # fmt: skip
def test_errors_are_clear_and_never_show_the_token(
    endpoint: tuple[WebhookActuator, Endpoint], mode: str, match: str
) -> None:
    actuator, ep = endpoint
    baseline = Baseline(target=TARGET, kind="webhook", replicas=10)
    actuator.options.timeout_seconds = 0.3
    ep.mode, ep.delay = mode, 1.0
    with pytest.raises(ActuationError, match=match) as info:
        asyncio.run(actuator.apply(TARGET, CHANGE, 0.1, baseline))
    assert TOKEN not in str(info.value)


def test_a_refused_connection_and_a_missing_token_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ROLLOUT_TOKEN", raising=False)
    config = ActuatorConfig(kind="webhook", options={"url": "http://127.0.0.1:9/x"},
                            credentials={"token": "ROLLOUT_TOKEN"})  # fmt: skip
    with pytest.raises(OptiInfraError, match="ROLLOUT_TOKEN is not set"):
        build_actuator(config)
    actuator = build_actuator(config.model_copy(update={"credentials": {}}))
    with pytest.raises(ActuationError, match=r"127.0.0.1:9/x: webhook GET failed: ConnectError"):
        asyncio.run(actuator.read_back(TARGET))
    asyncio.run(actuator.aclose())
