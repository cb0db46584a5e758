"""What is sent to the model, how its reply is parsed, and the cache's robustness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optiinfra.llm import (
    CachedReply,
    ModelReply,
    ResponseCache,
    build_messages,
    cache_key,
    parse_reply,
)
from optiinfra.llm.prompt import ReplyError
from tests.llm.standin import good_reply, sample_request


def test_the_user_message_holds_only_the_request() -> None:
    system, user = build_messages(sample_request())
    payload = json.loads(user["content"].split("\n", 1)[1])
    assert set(payload) == {"kind", "target", "figures", "evidence", "draft"}
    assert payload["figures"]["interruption_rate"]["display"] == "4.23%"
    assert '"summary"' in system["content"] and "JSON" in system["content"]


def test_messages_are_deterministic() -> None:
    assert build_messages(sample_request()) == build_messages(sample_request())


def test_a_fenced_json_reply_is_accepted() -> None:
    text = "```json\n" + json.dumps(good_reply()) + "\n```"
    assert parse_reply(text).summary == good_reply()["summary"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no text"),
        ("", "no text"),
        ("Here you go: spot is cheaper", "not JSON"),
        ("[1, 2]", "JSON list, not an object"),
        ('{"summary": "x"}', "rationale"),
        ('{"summary": "", "rationale": "r"}', "summary"),
        ('{"summary": "s", "rationale": "r", "risks": "none"}', "risks"),
        ('{"summary": "s", "rationale": "r", "risks": [" "]}', "risks"),
    ],
)
def test_bad_replies_are_rejected_with_the_problem(content: object, problem: str) -> None:
    with pytest.raises(ReplyError, match=problem):
        parse_reply(content)


def test_a_corrupt_cache_file_is_a_miss(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    key = cache_key("groq", "https://api.groq.com", "m", build_messages(sample_request()), {})
    entry = CachedReply(key=key, provider="groq", model="m", reply=ModelReply(**good_reply()))
    cache.put(entry)
    assert cache.get(key) == entry
    cache.path(key).write_text("{not json")
    assert cache.get(key) is None


def test_the_key_depends_on_model_and_messages() -> None:
    messages = build_messages(sample_request())
    base = cache_key("groq", "u", "m1", messages, {})
    assert base != cache_key("groq", "u", "m2", messages, {})
    assert base != cache_key("groq", "u", "m1", messages[:1], {})
    assert base == cache_key("groq", "u", "m1", build_messages(sample_request()), {})
