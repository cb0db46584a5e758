"""Golden-set probes: each selected item asked of each target deployment, concurrently.

One probe is one request to a target's OpenAI-compatible endpoint
(``<base_url>/chat/completions``, or ``/completions``) with ``temperature: 0`` and a small
``max_tokens``; its latency is measured from send to full response. Every target gets the
same items in a run, so a canary and its baseline are graded on the same questions.

Requests of all targets share one semaphore (``concurrency``), so a large fleet is probed
at a bounded rate. A target that refuses connections or lets a request time out is marked
down at its first failure and its remaining probes are skipped (a dead or hung endpoint
costs one timeout, not one per item: a short answer never needs ``request_timeout``, and
the provider's own timeout must still leave time for the other targets); other failures
(HTTP errors, malformed replies) are counted per target. Either way the other targets
are still probed, and each problem becomes one note naming the deployment and URL.

The configuration that answered is read from the ``x-optiinfra-config-id`` response
header when the server sends one (the sandbox does; a proxy in front of a real fleet
can), else taken from the target's ``config_id``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from providers.quality.golden import GoldenItem

#: Response header naming the configuration that served a request.
CONFIG_ID_HEADER = "x-optiinfra-config-id"
_MAX_DETAIL = 160


@dataclass(frozen=True)
class Endpoint:
    """A target ready to probe: where, which model, which key."""

    deployment: str
    base_url: str
    model: str | None = None
    api: str = "chat"
    config_id: str = ""
    api_key: SecretStr | None = None

    @property
    def url(self) -> str:
        path = "/chat/completions" if self.api == "chat" else "/completions"
        return self.base_url.rstrip("/") + path

    def headers(self) -> dict[str, str]:
        if self.api_key is None:
            return {}
        return {"Authorization": f"Bearer {self.api_key.get_secret_value()}"}


@dataclass(frozen=True)
class ProbeAnswer:
    """One answered probe, not yet scored."""

    deployment: str
    item: GoldenItem
    ts: datetime
    text: str
    latency_seconds: float
    config_id: str


@dataclass
class _TargetState:
    endpoint: Endpoint
    model: str | None
    down: str | None = None
    failures: list[str] = field(default_factory=list)
    answered: int = 0
    skipped: int = 0


@dataclass
class ProbeRun:
    """What a round of probes gave: answers, problem notes, and the targets that were down."""

    answers: list[ProbeAnswer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    down: list[str] = field(default_factory=list)


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_DETAIL else flat[:_MAX_DETAIL] + "…"


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return _short(response.text)
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
        if isinstance(message, str):
            return _short(message)
    return _short(response.text)


def answer_text(body: Any, api: str) -> str | None:
    """The answer in a chat or completions response body, or None if it has none."""
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"] if api == "chat" else choice["text"]
    except (KeyError, IndexError, TypeError):
        return None
    return text if isinstance(text, str) else None


async def _resolve_model(
    client: httpx.AsyncClient, state: _TargetState, limit: asyncio.Semaphore, timeout: float
) -> None:
    """Fill in the model from ``GET <base_url>/models`` when the target names none."""
    if state.model is not None:
        return
    url = state.endpoint.base_url.rstrip("/") + "/models"
    async with limit:
        try:
            response = await client.get(url, headers=state.endpoint.headers(), timeout=timeout)
        except httpx.HTTPError as exc:
            state.down = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return
    if response.status_code >= 400:
        state.down = f"GET {url} answered HTTP {response.status_code}: {_error_text(response)}"
        return
    try:
        state.model = str(response.json()["data"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        state.down = f"GET {url} lists no model; set the target's model"


def _body(state: _TargetState, item: GoldenItem, max_tokens: int, system: str | None) -> dict:
    body: dict[str, Any] = {"model": state.model, "max_tokens": max_tokens, "temperature": 0}
    if state.endpoint.api == "chat":
        body["messages"] = item.messages(system)
    else:
        body["prompt"] = item.text(system)
    return body


async def _probe(
    client: httpx.AsyncClient,
    state: _TargetState,
    item: GoldenItem,
    *,
    limit: asyncio.Semaphore,
    max_tokens: int,
    system_prompt: str | None,
    timeout: float,
) -> ProbeAnswer | None:
    endpoint = state.endpoint
    async with limit:
        if state.down is not None:
            state.skipped += 1
            return None
        started = time.perf_counter()
        try:
            response = await client.post(
                endpoint.url,
                json=_body(state, item, max_tokens, system_prompt),
                headers=endpoint.headers(),
                timeout=timeout,
            )
        except (httpx.ConnectError, httpx.TimeoutException) as exc:
            if state.down is None:
                state.down = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return None
        except httpx.HTTPError as exc:
            state.failures.append(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc))
            return None
        latency = time.perf_counter() - started
    ts = datetime.now(UTC)
    if response.status_code >= 400:
        state.failures.append(f"HTTP {response.status_code}: {_error_text(response)}")
        return None
    try:
        text = answer_text(response.json(), endpoint.api)
    except ValueError:
        text = None
    if text is None:
        state.failures.append(f"reply is not an OpenAI {endpoint.api} completion")
        return None
    state.answered += 1
    config_id = response.headers.get(CONFIG_ID_HEADER) or endpoint.config_id
    return ProbeAnswer(endpoint.deployment, item, ts, text.strip(), latency, config_id)


async def probe_targets(
    client: httpx.AsyncClient,
    endpoints: list[Endpoint],
    items: list[GoldenItem],
    *,
    limit: asyncio.Semaphore,
    max_tokens: int = 32,
    system_prompt: str | None = None,
    timeout: float = 30.0,
) -> ProbeRun:
    """Ask every item of every endpoint (bounded by ``limit``); never raises for a target."""
    states = [_TargetState(e, e.model) for e in endpoints]
    await asyncio.gather(*(_resolve_model(client, s, limit, timeout) for s in states))
    results = await asyncio.gather(
        *(
            _probe(
                client,
                state,
                item,
                limit=limit,
                max_tokens=max_tokens,
                system_prompt=system_prompt,
                timeout=timeout,
            )
            for state in states
            for item in items
        )
    )
    run = ProbeRun(answers=[r for r in results if r is not None])
    for state in states:
        where = f"quality target {state.endpoint.deployment} ({state.endpoint.base_url})"
        if state.down is not None and state.answered == 0:
            run.down.append(state.endpoint.deployment)
            run.notes.append(f"{where} is down: {state.down}; its probes were skipped")
        elif state.down is not None:
            run.notes.append(
                f"{where} went down after {state.answered} answers: {state.down}; "
                f"{state.skipped} probes skipped"
            )
        if state.failures:
            run.notes.append(
                f"{where}: {len(state.failures)} of {len(items)} probes failed "
                f"(first: {state.failures[0]})"
            )
    return run
