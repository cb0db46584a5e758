"""The OpenAI-compatible explainer (httpx) against the same stand-in, at /v1/chat/completions."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from optiinfra.config.schema import LLMConfig
from optiinfra.llm import CallPolicy, OpenAICompatibleExplainer, build_explainer
from tests.llm.standin import (
    FAKE_KEY,
    KEY_ENV,
    ChatStandIn,
    error,
    good_reply,
    reply,
    sample_request,
)

FAST = CallPolicy(backoff_seconds=0.0)


@pytest.fixture
def server() -> Iterator[ChatStandIn]:
    with ChatStandIn(default=reply(good_reply())) as standin:
        yield standin


def vllm_config(base_url: str, **fields: object) -> LLMConfig:
    return LLMConfig(
        provider="openai-compatible", model="served-model", base_url=base_url, **fields
    )


def test_a_valid_reply_is_used(server: ChatStandIn) -> None:
    server.queue(reply(good_reply(), prompt_tokens=200, completion_tokens=30))
    explainer = build_explainer(vllm_config(server.openai_base_url), policy=FAST)
    assert isinstance(explainer, OpenAICompatibleExplainer)

    with explainer:
        explanation = explainer.explain(sample_request())

    assert explanation.source == "llm"
    assert explanation.provider == "openai-compatible"
    assert explanation.model == "served-model"
    assert explanation.usage is not None and explanation.usage.total_tokens == 230
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["response_format"] == {"type": "json_object"}
    assert "Authorization" not in request.headers  # no key configured, none sent


def test_a_configured_key_is_sent_as_a_bearer_token(server: ChatStandIn) -> None:
    config = vllm_config(server.openai_base_url, api_key_env=KEY_ENV)
    with build_explainer(config, environ={KEY_ENV: FAKE_KEY}, policy=FAST) as explainer:
        explainer.explain(sample_request())
        assert FAKE_KEY not in repr(explainer)
    assert server.requests[0].headers["Authorization"] == f"Bearer {FAKE_KEY}"


def test_errors_are_retried_and_invented_numbers_rejected(server: ChatStandIn) -> None:
    server.queue(error(502, "Bad Gateway"), reply(good_reply() | {"summary": "Saves 37%."}))
    with build_explainer(vllm_config(server.openai_base_url), policy=FAST) as explainer:
        explanation = explainer.explain(sample_request())
    assert server.count == 2
    assert explanation.source == "template"
    assert "number guard" in (explanation.fallback_reason or "") and "37%" in (
        explanation.fallback_reason or ""
    )


def test_a_timeout_falls_back(server: ChatStandIn) -> None:
    server.queue(reply(good_reply(), delay=10.0))
    config = vllm_config(server.openai_base_url, timeout=0.2)
    with build_explainer(config, policy=CallPolicy(max_attempts=1)) as explainer:
        explanation = explainer.explain(sample_request())
    assert explanation.source == "template"
    assert "no answer within 0.2 s" in (explanation.fallback_reason or "")


def test_a_refused_connection_falls_back() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = vllm_config(f"http://127.0.0.1:{port}/v1")
    with build_explainer(config, policy=FAST) as explainer:
        explanation = explainer.explain(sample_request())
        assert explainer.totals.requests == 3
    assert explanation.source == "template"
    assert "cannot connect (ConnectError)" in (explanation.fallback_reason or "")


def test_an_injected_client_is_used_and_left_open(server: ChatStandIn) -> None:
    client = httpx.Client()
    explainer = build_explainer(vllm_config(server.openai_base_url), http_client=client)
    explainer.explain(sample_request())
    explainer.close()
    assert not client.is_closed and server.count == 1
    client.close()
