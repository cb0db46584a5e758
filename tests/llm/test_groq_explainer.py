"""The Groq explainer, driving the real ``groq`` SDK against a local stand-in server."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from optiinfra.config.schema import LLMConfig
from optiinfra.llm import CallPolicy, Explainer, GroqExplainer, build_explainer
from tests.llm.standin import (
    FAKE_KEY,
    KEY_ENV,
    ChatStandIn,
    Step,
    error,
    good_reply,
    reply,
    sample_request,
)

FAST = CallPolicy(backoff_seconds=0.01, max_backoff_seconds=0.05, max_retry_after_seconds=5.0)


@pytest.fixture
def server() -> Iterator[ChatStandIn]:
    with ChatStandIn(default=reply(good_reply())) as standin:
        yield standin


class Sleeps(list[float]):
    """Records the waits an explainer asks for (instead of waiting)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _build(
    server: ChatStandIn,
    *,
    cache_dir: Path | None = None,
    timeout: float = 5.0,
    policy: CallPolicy = FAST,
    sleep: Sleeps | None = None,
) -> Explainer:
    config = LLMConfig(
        provider="groq",
        model="llama-test",
        base_url=server.root,
        api_key_env=KEY_ENV,
        timeout=timeout,
    )
    return build_explainer(
        config,
        cache_dir=cache_dir,
        environ={KEY_ENV: FAKE_KEY},
        policy=policy,
        sleep=sleep if sleep is not None else Sleeps(),
    )


Make = Callable[..., Explainer]


@pytest.fixture
def groq_explainer(server: ChatStandIn) -> Iterator[Make]:
    """Builds Groq explainers against ``server`` and closes them after the test."""
    built: list[Explainer] = []

    def make(**options: Any) -> Explainer:
        built.append(_build(server, **options))
        return built[-1]

    yield make
    for explainer in built:
        explainer.close()


def test_a_valid_reply_is_used_and_its_tokens_are_counted(
    server: ChatStandIn, groq_explainer: Make
) -> None:
    server.queue(reply(good_reply(), prompt_tokens=321, completion_tokens=54))
    explainer = groq_explainer()
    assert isinstance(explainer, GroqExplainer)

    explanation = explainer.explain(sample_request())

    assert explanation.source == "llm"
    assert explanation.fallback_reason is None
    assert explanation.summary == good_reply()["summary"]
    assert explanation.risks == good_reply()["risks"]
    assert explanation.model == "llama-test"
    assert explanation.usage is not None
    assert (explanation.usage.prompt_tokens, explanation.usage.completion_tokens) == (321, 54)
    assert explanation.usage.total_tokens == 375
    totals = explainer.totals
    assert (totals.explanations, totals.from_llm, totals.requests) == (1, 1, 1)
    assert totals.total_tokens == 375


def test_the_sdk_sends_groqs_wire_format(server: ChatStandIn, groq_explainer: Make) -> None:
    groq_explainer().explain(sample_request())

    (request,) = server.requests
    assert request.path == "/openai/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {FAKE_KEY}"
    body = request.body
    assert body["model"] == "llama-test"
    assert body["response_format"] == {"type": "json_object"}
    assert body["temperature"] == 0
    system, user = body["messages"]
    assert system["role"] == "system" and "JSON schema" in system["content"]
    sent = json.loads(user["content"].split("\n", 1)[1])
    assert sent["figures"]["savings"] == {
        "value": 1234.5,
        "unit": "USD/month",
        "display": "$1,234.50/month",
    }
    assert sent["draft"]["summary"].startswith("Move chat-70b")


def test_totals_add_up_over_calls(server: ChatStandIn, groq_explainer: Make) -> None:
    explainer = groq_explainer()
    for _ in range(3):
        explainer.explain(sample_request())
    totals = explainer.totals
    assert (totals.explanations, totals.requests, totals.prompt_tokens) == (3, 3, 360)


def test_a_timeout_falls_back_to_the_template(server: ChatStandIn, groq_explainer: Make) -> None:
    server.queue(*[Step(content="{}", delay=10.0)] * 2)
    policy = CallPolicy(max_attempts=2, backoff_seconds=0.0)
    explainer = groq_explainer(timeout=0.2, policy=policy)

    explanation = explainer.explain(sample_request())

    assert explanation.source == "template"
    assert explanation.summary == sample_request().template.summary
    assert "no answer within 0.2 s" in (explanation.fallback_reason or "")
    assert "after 2 attempts" in (explanation.fallback_reason or "")
    assert server.count == 2
    assert explainer.totals.fallbacks == 1


def test_a_reply_that_is_not_json_falls_back(server: ChatStandIn, groq_explainer: Make) -> None:
    server.queue(reply("Sure! Moving to spot is a great idea."))
    explanation = groq_explainer().explain(sample_request())
    assert explanation.source == "template"
    assert "not JSON" in (explanation.fallback_reason or "")
    # the tokens were spent all the same, and are accounted for
    assert explanation.usage is not None and explanation.usage.total_tokens == 160


def test_json_of_the_wrong_shape_falls_back(server: ChatStandIn, groq_explainer: Make) -> None:
    server.queue(reply({"explanation": "Moving to spot saves money."}))
    explanation = groq_explainer().explain(sample_request())
    assert explanation.source == "template"
    reason = explanation.fallback_reason or ""
    assert "does not match the schema" in reason and "summary" in reason


def test_a_body_that_is_not_a_chat_completion_falls_back(
    server: ChatStandIn, groq_explainer: Make
) -> None:
    server.queue(Step(raw='{"object": "list", "data": []}'))
    explanation = groq_explainer().explain(sample_request())
    assert explanation.source == "template"
    assert "not a chat completion" in (explanation.fallback_reason or "")


def test_a_server_error_is_retried(server: ChatStandIn, groq_explainer: Make) -> None:
    server.queue(error(500, "Internal Server Error", type_="internal_server_error"))
    sleeps = Sleeps()
    explainer = groq_explainer(sleep=sleeps)

    explanation = explainer.explain(sample_request())

    assert explanation.source == "llm"
    assert server.count == 2
    assert sleeps == [0.01]  # the policy's first backoff
    assert explainer.totals.requests == 2


def test_rate_limiting_waits_as_long_as_retry_after_says(
    server: ChatStandIn, groq_explainer: Make
) -> None:
    limited = error(
        429,
        "Rate limit reached for model `llama-test`. Please try again in 1.5s.",
        type_="tokens",
        code="rate_limit_exceeded",
        headers={"retry-after": "1.5"},
    )
    server.queue(limited)
    sleeps = Sleeps()

    explanation = groq_explainer(sleep=sleeps).explain(sample_request())

    assert explanation.source == "llm"
    assert sleeps == [1.5]
    assert server.count == 2


def test_a_retry_after_longer_than_allowed_is_not_waited_for(
    server: ChatStandIn, groq_explainer: Make
) -> None:
    server.queue(error(429, "Rate limit reached", headers={"retry-after": "60"}))
    sleeps = Sleeps()

    explanation = groq_explainer(sleep=sleeps).explain(sample_request())

    assert explanation.source == "template"
    reason = explanation.fallback_reason or ""
    assert "HTTP 429: Rate limit reached" in reason and "wait 60 s" in reason
    assert sleeps == [] and server.count == 1


def test_a_client_error_is_not_retried(server: ChatStandIn, groq_explainer: Make) -> None:
    server.queue(error(401, "Invalid API Key", code="invalid_api_key"))
    explanation = groq_explainer().explain(sample_request())
    assert explanation.source == "template"
    assert "HTTP 401: Invalid API Key" in (explanation.fallback_reason or "")
    assert server.count == 1


def test_retries_are_bounded(server: ChatStandIn, groq_explainer: Make) -> None:
    server.queue(*[error(503, "Service Unavailable")] * 5)
    sleeps = Sleeps()
    explainer = groq_explainer(sleep=sleeps)

    explanation = explainer.explain(sample_request())

    assert explanation.source == "template"
    assert server.count == 3  # CallPolicy.max_attempts
    assert sleeps == [0.01, 0.02]  # exponential backoff between attempts


def test_a_reply_that_invents_a_number_gets_the_template(
    server: ChatStandIn, groq_explainer: Make
) -> None:
    invented = good_reply() | {"summary": "Moving to spot saves $14,814 a year."}
    server.queue(reply(invented))

    explanation = groq_explainer().explain(sample_request())

    assert explanation.source == "template"
    assert explanation.summary == sample_request().template.summary
    reason = explanation.fallback_reason or ""
    assert "number guard" in reason and "14,814" in reason


def test_a_cached_reply_makes_no_request(
    server: ChatStandIn, groq_explainer: Make, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "llm-cache"
    first = groq_explainer(cache_dir=cache_dir).explain(sample_request())
    assert first.source == "llm" and not first.cached and server.count == 1

    again = groq_explainer(cache_dir=cache_dir)  # a new run, same cache
    second = again.explain(sample_request())

    assert server.count == 1
    assert second.source == "llm" and second.cached
    assert second.summary == first.summary
    assert second.usage is None  # nothing spent this time
    assert (again.totals.cache_hits, again.totals.requests, again.totals.total_tokens) == (1, 0, 0)


def test_changed_figures_miss_the_cache(
    server: ChatStandIn, groq_explainer: Make, tmp_path: Path
) -> None:
    explainer = groq_explainer(cache_dir=tmp_path / "cache")
    explainer.explain(sample_request())
    changed = sample_request().model_copy(update={"target": "deployment chat-8b on g6.xlarge"})
    explainer.explain(changed)
    assert server.count == 2


def test_a_rejected_reply_is_not_cached(
    server: ChatStandIn, groq_explainer: Make, tmp_path: Path
) -> None:
    server.queue(reply("not json"))
    explainer = groq_explainer(cache_dir=tmp_path / "cache")
    assert explainer.explain(sample_request()).source == "template"
    assert explainer.explain(sample_request()).source == "llm"
    assert server.count == 2


def test_repeated_failures_open_the_breaker(server: ChatStandIn, groq_explainer: Make) -> None:
    server.queue(*[error(503, "Service Unavailable")] * 2)
    policy = CallPolicy(max_attempts=1, breaker_failures=2, breaker_cooldown_seconds=600)
    explainer = groq_explainer(policy=policy)

    explainer.explain(sample_request())
    explainer.explain(sample_request())
    skipped = explainer.explain(sample_request())

    assert server.count == 2  # the third call sent nothing
    assert skipped.source == "template"
    assert "skipped: the last 2 calls failed" in (skipped.fallback_reason or "")


def test_the_key_never_leaks(
    server: ChatStandIn, groq_explainer: Make, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug lines included
    server.queue(
        error(500, "upstream failed", echo_authorization=True),  # a careless proxy
        error(400, "bad request", echo_authorization=True),
        reply("not json"),
        Step(content="{}", delay=10.0),
    )
    cache_dir = tmp_path / "cache"
    policy = CallPolicy(max_attempts=1, breaker_failures=10)
    explainer = groq_explainer(cache_dir=cache_dir, timeout=0.2, policy=policy)

    reasons: list[Any] = []
    for _ in range(5):
        explanation = explainer.explain(sample_request())
        reasons.append(explanation.fallback_reason)
        assert FAKE_KEY not in explanation.model_dump_json()

    assert reasons[0] is not None and "[redacted]" in reasons[0]
    assert reasons[1] is not None and "[redacted]" in reasons[1]
    assert FAKE_KEY in server.requests[0].headers["Authorization"]  # it was sent...
    assert FAKE_KEY not in caplog.text  # ...and never logged
    assert FAKE_KEY not in repr(explainer) and FAKE_KEY not in str(explainer)
    files = list(cache_dir.rglob("*.json"))
    assert files  # the fifth call's good reply was stored
    assert all(FAKE_KEY not in path.read_text() for path in files)
