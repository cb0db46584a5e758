"""What is sent to the model, and how its answer is read.

Only the request is sent: the recommendation's kind and target, its figures (value, unit
and code's rendering), the evidence statements and the template text. No credentials,
no store contents beyond what the agent put in the request. The messages are built
deterministically (sorted keys, fixed separators), so the same request gives the same
cache key.

The reply must be one JSON object matching :class:`~optiinfra.llm.models.ModelReply`;
the schema is in the system prompt and JSON mode (``response_format``) is requested.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from optiinfra.llm.models import ExplanationRequest, ModelReply

__all__ = ["PROMPT_VERSION", "ReplyError", "build_messages", "parse_reply", "system_prompt"]

#: Bumped whenever the messages change meaning, so old cache entries stop matching.
PROMPT_VERSION = 1

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class ReplyError(ValueError):
    """The model's text is not a valid reply; the message says what is wrong."""


def system_prompt() -> str:
    """The instructions: explain, never compute; answer in JSON of a given schema."""
    schema = json.dumps(ModelReply.model_json_schema(), sort_keys=True, separators=(",", ":"))
    return (
        "You explain one infrastructure recommendation to the engineers who decide whether "
        "to approve it. Code has already computed every figure and checked it; your task "
        "is to make the reasoning clear, not to calculate.\n"
        "Rules:\n"
        "1. Every number you write must be one of the figures, as given in its 'display' "
        "text. You may round it (keep at least two significant digits) or write it with a "
        "k/M/B suffix, and a ratio may be written as a percentage.\n"
        "2. Never derive a new number: no sums, differences, ratios, totals, dates or "
        "percentages that are not given as figures.\n"
        "3. Counts up to ten may appear as digits or words; do not spell out other numbers.\n"
        "4. Use only the facts in 'evidence' and 'draft'; do not add outside knowledge.\n"
        "5. 'summary' is one sentence; 'rationale' is a short paragraph; 'risks' lists "
        "what could go wrong, one short sentence each.\n"
        "Answer with a single JSON object and nothing else. Its JSON schema is:\n" + schema
    )


def request_payload(request: ExplanationRequest) -> dict[str, Any]:
    """The user message's content, as data: only what the agent put in the request."""
    return {
        "kind": request.kind,
        "target": request.target,
        "figures": {
            name: {"value": figure.value, "unit": figure.unit, "display": figure.rendered()}
            for name, figure in request.figures.items()
        },
        "evidence": list(request.evidence),
        "draft": {
            "summary": request.template.summary,
            "rationale": request.template.rationale,
            "risks": list(request.template.risks),
        },
    }


def build_messages(request: ExplanationRequest) -> list[dict[str, str]]:
    """The chat messages for one request (system instructions, then the request as JSON)."""
    payload = json.dumps(
        request_payload(request), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return [
        {"role": "system", "content": system_prompt()},
        {"role": "user", "content": "Explain this recommendation:\n" + payload},
    ]


def parse_reply(content: object) -> ModelReply:
    """The validated reply in ``content``, or :class:`ReplyError` saying what is wrong.

    A code fence around the object is tolerated; anything else (prose, a JSON array,
    missing or mistyped fields) is not.
    """
    if not isinstance(content, str) or not content.strip():
        raise ReplyError("the reply has no text")
    fenced = _FENCE.match(content)
    text = fenced.group(1) if fenced else content
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReplyError(f"the reply is not JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(value, dict):
        raise ReplyError(f"the reply is JSON {type(value).__name__}, not an object")
    try:
        return ModelReply.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'reply'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ReplyError(f"the reply does not match the schema: {problems}") from None
