"""The LLM judge: parsing its replies, and grading through a stand-in OpenAI-compatible
server on a real socket (good replies, garbage, HTTP errors), alone and in a collection."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from pydantic import SecretStr

from optiinfra.config import ProviderConfig
from providers import CollectionContext
from providers.quality import Judge, QualityProvider, parse_verdict
from providers.quality.judge import judge_messages
from tests.providers.quality_standin import StandIn, judge_json, last_user_text

END = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CTX = CollectionContext(start=END - timedelta(minutes=15), end=END)
KEY = "sk-test-never-shown-0123"


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ('{"score": 5, "reason": "right"}', 1.0),
        ('```json\n{"score": 4, "reason": "close"}\n```', 0.75),
        ('Sure! {"reason": "half", "score": "3"} Hope this helps.', 0.5),
        ("Score: 2/5", 0.25),
        ("1", 0.0),
        ('{"other": 1} then {"score": 5}', 1.0),
    ],
)
def test_judge_replies_are_parsed_leniently(reply: str, score: float) -> None:
    verdict = parse_verdict(reply)
    assert verdict.score == score and verdict.note is None


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        ('{"score": 9}', "outside 1-5"),
        ('{"score": 0.8}', "outside 1-5"),
        ('{"score": true}', "no 1-5 score"),
        ("I think the answer is right.", "no 1-5 score"),
        ("", "no 1-5 score"),
        ("{not json", "no 1-5 score"),
    ],
)
def test_bad_judge_replies_give_no_score_and_say_why(reply: str, fragment: str) -> None:
    verdict = parse_verdict(reply)
    assert verdict.score is None and verdict.note is not None and fragment in verdict.note


def test_the_judge_sees_the_reference_only_when_there_is_one() -> None:
    with_ref = judge_messages("Capital of France?", "Paris", "Paris", ("paris, france",))
    assert "REFERENCE" in with_ref[1]["content"] and "paris, france" in with_ref[1]["content"]
    assert "REFERENCE" not in judge_messages("Capital of France?", "Paris")[1]["content"]
    assert "1 to 5" in with_ref[0]["content"]


def _judge_reply(body: dict[str, Any]) -> str | tuple[int, Any]:
    """Probe answers for the probe model; grades (or failures) for the judge models."""
    model, asked = body["model"], last_user_text(body)
    if model == "stand-in-model":  # a probe
        return "Paris" if "France" in asked else "Berlin"
    if model == "garbage-judge":
        return "Well, it depends on what you mean by correct."
    if model == "failing-judge":
        return (503, {"error": {"message": "model overloaded"}})
    right = "ANSWER:\nParis" in asked
    return judge_json(5 if right else 1)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_grading_through_a_stand_in_server() -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        async with StandIn(reply=_judge_reply) as server, httpx.AsyncClient() as client:
            judges = [
                Judge(base_url=server.base_url, model=m, client=client, api_key=SecretStr(KEY))
                for m in ("judge", "garbage-judge", "failing-judge")
            ]
            verdicts = [await j.grade("Capital of France?", "Paris", "Paris") for j in judges]
            verdicts.append(await judges[0].grade("Capital of France?", "Lyon"))
            dead = Judge(base_url=f"http://127.0.0.1:{_closed_port()}/v1", model="j", client=client)
            verdicts.append(await dead.grade("Q?", "A"))
            return verdicts, server.requests

    (good, garbage, failing, wrong, unreachable), requests = asyncio.run(main())
    assert good.score == 1.0 and good.note is None
    assert garbage.score is None and "no 1-5 score" in (garbage.note or "")
    assert failing.score is None and "HTTP 503" in (failing.note or "")
    assert wrong.score == 0.0  # graded without a reference
    assert unreachable.score is None and "unreachable" in (unreachable.note or "")
    target, headers, body = requests[0]
    assert target == "/v1/chat/completions" and headers["authorization"] == f"Bearer {KEY}"
    assert body["temperature"] == 0 and body["model"] == "judge"


def _write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    golden = tmp_path / "golden.jsonl"
    items = [
        {"id": "g1", "prompt": "What is the capital of France?", "reference": "Paris"},
        {"id": "g2", "prompt": "What is the capital of Germany?", "reference": "Berlin"},
        {"id": "g3", "prompt": "What is the capital of Italy?", "reference": "Rome"},
    ]
    golden.write_text("\n".join(json.dumps(i) for i in items) + "\n", encoding="utf-8")
    traffic = tmp_path / "traffic.jsonl"
    at = (END - timedelta(minutes=3)).isoformat()
    common = {"ts": at, "deployment": "standin", "prompt": "Capital of France?"}
    records = [{"id": "t1", **common, "answer": "Paris"}, {"id": "t2", **common, "answer": "Nice"}]
    traffic.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return golden, traffic


async def _collect_with_judge(
    tmp_path: Path, judge_model: str, environ: dict[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    golden, traffic = _write_inputs(tmp_path)
    async with StandIn(reply=_judge_reply) as server:
        config = ProviderConfig(
            name="answers",
            kind="quality",
            credentials={"judge_key": "JUDGE_KEY"},
            quality={
                "golden_set": str(golden),
                "targets": [
                    {"deployment": "standin", "base_url": server.base_url, "config_id": "cfg-7"}
                ],
                "interactions": {"path": str(traffic)},
                "judge": {
                    "provider": "openai-compatible",
                    "base_url": server.base_url,
                    "model": judge_model,
                    "credential": "judge_key",
                },
            },
        )
        provider = QualityProvider(config, environ=environ)
        try:
            frame = await provider.collect_quality(CTX)
        finally:
            await provider.aclose()
        return frame, provider.notes


def test_a_collection_with_a_judge_records_judge_em_and_f1(tmp_path: Path) -> None:
    frame, notes = asyncio.run(_collect_with_judge(tmp_path, "judge", {"JUDGE_KEY": KEY}))
    assert notes == []
    rows = frame.set_index("item_id")
    probes, sampled = frame[frame.kind == "probe"], frame[frame.kind == "sampled"]
    assert set(probes.item_id) == {"g1", "g2", "g3"} and set(sampled.item_id) == {"t1", "t2"}
    assert set(probes.config_id) == {"cfg-7"}  # no header from this server: the configured id
    assert rows.loc["g1", "exact_match"] == 1.0 and rows.loc["g1", "judge_score"] == 1.0
    assert rows.loc["g2", "exact_match"] == 1.0 and rows.loc["g3", "exact_match"] == 0.0
    assert rows.loc["g3", "f1"] == 0.0 and rows.loc["g3", "judge_score"] == 0.0
    assert rows.loc["t1", "judge_score"] == 1.0 and rows.loc["t2", "judge_score"] == 0.0
    assert sampled.exact_match.isna().all() and sampled.f1.isna().all()  # no reference


@pytest.mark.parametrize(
    ("judge_model", "environ", "fragment"),
    [
        ("garbage-judge", {"JUDGE_KEY": KEY}, "judge gave no score for 5 of 5 answers"),
        ("failing-judge", {"JUDGE_KEY": KEY}, "HTTP 503"),
        ("judge", {}, "environment variable JUDGE_KEY is not set"),
    ],
)
def test_a_judge_that_fails_leaves_em_and_f1_and_a_note(
    tmp_path: Path, judge_model: str, environ: dict[str, str], fragment: str
) -> None:
    frame, notes = asyncio.run(_collect_with_judge(tmp_path, judge_model, environ))
    assert set(frame.item_id) == {"g1", "g2", "g3"}  # interactions had only the judge
    assert frame.judge_score.isna().all()
    assert frame.exact_match.notna().all() and frame.f1.notna().all()
    assert any(fragment in note for note in notes), notes
    assert any("2 sampled interactions were not scored" in note for note in notes)
    assert all(KEY not in note for note in notes)
