"""The LLM judge: an OpenAI-compatible chat model grades an answer from 1 to 5.

Exact match and token F1 need a reference answer; real interactions rarely have one,
and a right answer can be worded in many ways. So an LLM reads the question, the answer
and (when there is one) the reference, and rates correctness on a 1-5 scale, which is
stored normalised to 0-1 (``(rating - 1) / 4``: 1 → 0.0, 3 → 0.5, 5 → 1.0).

A judge is a model and can say anything: its reply is parsed leniently (a JSON object
with ``score``, possibly in a code fence or among other words, or ``score: 4``, or a
bare number), and anything else, an out-of-range number or a failed request gives *no
score and a note*, never an exception, so one bad reply cannot fail a collection.

Groq and any OpenAI-compatible server (vLLM, Ollama, OpenAI itself) are reached the same
way, ``POST <base_url>/chat/completions`` through httpx, so tests use a local stand-in
server instead of patching an SDK.

Example::

    judge = Judge(base_url="http://127.0.0.1:8000/v1", model="m", client=client)
    verdict = await judge.grade("Capital of France?", "Paris", reference="Paris")
    verdict.score  # 1.0, or None with verdict.note saying why
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from optiinfra.config.schema import GROQ_BASE_URL, QualityJudge

SCALE = (1.0, 5.0)
_SYSTEM = (
    "You grade answers for correctness. Rate how correct the ANSWER is for the QUESTION "
    "on a scale of 1 to 5: 1 = wrong or no answer, 2 = mostly wrong, 3 = partly right, "
    "4 = right with a small flaw, 5 = fully right. When a REFERENCE is given, it is a "
    "correct answer: judge agreement in meaning with it, not wording. Reply with JSON only: "
    '{"score": <1-5>, "reason": "<one short sentence>"}'
)
_SCORE_WORD = re.compile(r"score\W{0,3}\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_NUMBER_ONLY = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*5)?\s*\.?\s*$")
_MAX_NOTE = 160


@dataclass(frozen=True)
class Verdict:
    """A judge's grade in [0, 1], or ``None`` with a note saying why there is none."""

    score: float | None
    note: str | None = None


def judge_messages(
    question: str, answer: str, reference: str | None = None, aliases: Sequence[str] = ()
) -> list[dict[str, str]]:
    """The chat messages sent to the judge for one answer."""
    parts = [f"QUESTION:\n{question.strip()}"]
    if reference:
        accepted = "; ".join([reference, *aliases])
        parts.append(f"REFERENCE (a correct answer):\n{accepted}")
    parts.append(f"ANSWER:\n{answer.strip() or '(empty)'}")
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def parse_verdict(text: str) -> Verdict:
    """The normalised score in a judge's reply, or no score and why (never raises)."""
    raw = _find_score(text)
    if raw is None:
        return Verdict(None, f"judge reply has no 1-5 score: {_short(text)!r}")
    low, high = SCALE
    if not low <= raw <= high:
        return Verdict(None, f"judge score {raw:g} is outside {low:g}-{high:g}")
    return Verdict((raw - low) / (high - low))


def _find_score(text: str) -> float | None:
    if not isinstance(text, str):
        return None
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and "score" in value:
            return _number(value["score"])
    match = _SCORE_WORD.search(text) or _NUMBER_ONLY.match(text)
    return float(match.group(1)) if match else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _NUMBER_ONLY.match(value)
        return float(match.group(1)) if match else None
    return None


def _short(text: str) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= _MAX_NOTE else flat[:_MAX_NOTE] + "…"


class Judge:
    """Grades answers through one OpenAI-compatible chat endpoint."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        client: httpx.AsyncClient,
        api_key: SecretStr | None = None,
        timeout: float = 30.0,
        max_tokens: int = 200,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout = timeout
        self.max_tokens = max_tokens
        self._client = client
        self._api_key = api_key

    async def grade(
        self,
        question: str,
        answer: str,
        reference: str | None = None,
        aliases: Sequence[str] = (),
    ) -> Verdict:
        """One answer's verdict; request failures become a note, not an exception."""
        body = {
            "model": self.model,
            "messages": judge_messages(question, answer, reference, aliases),
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        headers = {}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        try:
            response = await self._client.post(
                self.url, json=body, headers=headers, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            return Verdict(None, f"judge {self.url} unreachable: {type(exc).__name__}: {exc}")
        if response.status_code >= 400:
            detail = _short(response.text)
            return Verdict(None, f"judge {self.url} answered HTTP {response.status_code}: {detail}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return Verdict(None, f"judge {self.url} reply is not a chat completion")
        return parse_verdict(content if isinstance(content, str) else "")


def make_judge(
    settings: QualityJudge, client: httpx.AsyncClient, api_key: SecretStr | None
) -> Judge | None:
    """The judge ``settings`` describe, or ``None`` for ``provider: none``."""
    if settings.provider == "none" or settings.model is None:
        return None
    base_url = str(settings.base_url) if settings.base_url is not None else GROQ_BASE_URL
    return Judge(
        base_url=base_url,
        model=settings.model,
        client=client,
        api_key=api_key,
        timeout=settings.timeout,
    )
