"""Explainers: one protocol, a template one, and a base for the chat-completion ones.

An :class:`Explainer` turns an :class:`ExplanationRequest` into an :class:`Explanation`
and never raises for a provider's sake: a recommendation must never wait on, or fail
because of, the model that words it. :class:`ChatExplainer` holds everything the
Groq and OpenAI-compatible explainers share, so each of those only says how to send
one request (``_complete``):

* the cache (a hit sends nothing),
* bounded retries: timeouts, connection errors, HTTP 408/409/429 and 5xx are retried
  up to ``CallPolicy.max_attempts`` with exponential backoff, or after the server's
  ``retry-after`` when it asks for no more than ``max_retry_after_seconds``;
* a circuit breaker: after ``breaker_failures`` calls in a row got no reply at all, the
  provider is skipped for ``breaker_cooldown_seconds``, so an optimize run with many
  recommendations does not wait out every timeout when the provider is down;
* reply validation and the number guard;
* token accounting, per call and as running totals (:attr:`totals`);
* redaction: the API key's value is removed from every reason and log line.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import SecretStr

from optiinfra.llm.cache import CachedReply, ResponseCache, cache_key
from optiinfra.llm.guard import GuardRules, unsupported_numbers
from optiinfra.llm.models import (
    Explanation,
    ExplanationRequest,
    ModelReply,
    TokenTotals,
    TokenUsage,
)
from optiinfra.llm.prompt import ReplyError, build_messages, parse_reply

__all__ = [
    "CallPolicy",
    "ChatExplainer",
    "ChatReply",
    "Explainer",
    "ProviderFailure",
    "TemplateExplainer",
    "parse_retry_after",
    "status_failure",
    "usage_from",
]

log = logging.getLogger("optiinfra.llm")

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_MAX_DETAIL = 200


@runtime_checkable
class Explainer(Protocol):
    """Words a recommendation's explanation; never raises for provider failures."""

    provider: str
    model: str | None

    def explain(self, request: ExplanationRequest) -> Explanation: ...

    @property
    def totals(self) -> TokenTotals: ...

    def close(self) -> None: ...

    def __enter__(self) -> Explainer: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(frozen=True)
class CallPolicy:
    """How hard a chat explainer tries before it shows the template instead."""

    max_attempts: int = 3
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    max_retry_after_seconds: float = 10.0
    breaker_failures: int = 3
    breaker_cooldown_seconds: float = 300.0
    max_tokens: int = 800
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.breaker_failures < 1:
            raise ValueError("max_attempts and breaker_failures must be at least 1")

    def delay(self, failed_attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before the next attempt; ``None``: the server asks too much."""
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_seconds else None
        return min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (failed_attempt - 1))


class ProviderFailure(Exception):
    """One attempt got no usable reply. Raised by ``_complete``; never leaves explain()."""

    def __init__(self, reason: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class ChatReply:
    """What one successful chat-completion request returned."""

    content: object
    model: str
    usage: TokenUsage | None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a server asks us to wait: ``retry-after-ms``, or ``retry-after`` as seconds
    or an HTTP date; ``None`` when it does not say."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000.0)
        if "retry-after" in lowered:
            return max(0.0, float(lowered["retry-after"]))
    except ValueError:
        pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def status_failure(status: int, headers: Mapping[str, str], body: object) -> ProviderFailure:
    """The failure for an HTTP error answer, with the provider's own message when it gave
    one (``{"error": {"message": ...}}``, the shape Groq and OpenAI-compatible servers use)."""
    retryable = status in _RETRYABLE_STATUS or status >= 500
    retry_after = parse_retry_after(headers) if retryable else None
    detail = _error_detail(body)
    reason = f"HTTP {status}" + (f": {detail}" if detail else "")
    return ProviderFailure(reason, retryable=retryable, retry_after=retry_after)


def _error_detail(body: object) -> str:
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            message = inner.get("message")
            return _short(str(message)) if message else ""
        return _short(str(inner))
    return _short(str(body)) if body else ""


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_DETAIL else flat[:_MAX_DETAIL] + "…"


def usage_from(data: object) -> TokenUsage | None:
    """Token counts from a chat completion's ``usage`` (a mapping or an SDK object)."""
    if data is None:
        return None

    def count(name: str) -> int:
        value = data.get(name) if isinstance(data, Mapping) else getattr(data, name, None)
        return value if isinstance(value, int) and value >= 0 else 0

    prompt, completion = count("prompt_tokens"), count("completion_tokens")
    total = count("total_tokens") or prompt + completion
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def _template(
    request: ExplanationRequest,
    provider: str,
    reason: str | None,
    usage: TokenUsage | None = None,
) -> Explanation:
    template = request.template
    return Explanation(
        summary=template.summary,
        rationale=template.rationale,
        risks=list(template.risks),
        source="template",
        provider=provider,
        usage=usage,
        fallback_reason=reason,
    )


@dataclass
class _Counters:
    explanations: int = 0
    from_llm: int = 0
    from_template: int = 0
    fallbacks: int = 0
    cache_hits: int = 0
    requests: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, explanation: Explanation, requests: int) -> None:
        with self.lock:
            self.explanations += 1
            self.requests += requests
            if explanation.source == "llm":
                self.from_llm += 1
            else:
                self.from_template += 1
                self.fallbacks += explanation.fallback_reason is not None
            self.cache_hits += explanation.cached
            if explanation.usage is not None:
                self.usage = self.usage + explanation.usage

    def snapshot(self) -> TokenTotals:
        with self.lock:
            return TokenTotals(
                explanations=self.explanations,
                from_llm=self.from_llm,
                from_template=self.from_template,
                fallbacks=self.fallbacks,
                cache_hits=self.cache_hits,
                requests=self.requests,
                prompt_tokens=self.usage.prompt_tokens,
                completion_tokens=self.usage.completion_tokens,
                total_tokens=self.usage.total_tokens,
            )


class TemplateExplainer:
    """Shows the template text. ``provider: none``, or an LLM that could not be set up
    (then ``unavailable_reason`` says why and every explanation carries it)."""

    model: str | None = None

    def __init__(self, *, provider: str = "none", unavailable_reason: str | None = None):
        self.provider = provider
        self.unavailable_reason = unavailable_reason
        self._counters = _Counters()

    def __repr__(self) -> str:
        why = f", unavailable_reason={self.unavailable_reason!r}" if self.unavailable_reason else ""
        return f"TemplateExplainer(provider={self.provider!r}{why})"

    def explain(self, request: ExplanationRequest) -> Explanation:
        explanation = _template(request, self.provider, self.unavailable_reason)
        self._counters.record(explanation, requests=0)
        return explanation

    @property
    def totals(self) -> TokenTotals:
        return self._counters.snapshot()

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> TemplateExplainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChatExplainer:
    """The shared half of chat-completion explainers; subclasses implement ``_complete``."""

    provider: str = "chat"

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        api_key: SecretStr | None,
        timeout: float,
        cache: ResponseCache | None = None,
        policy: CallPolicy | None = None,
        guard_rules: GuardRules | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model: str | None = model
        self.base_url = base_url
        self.timeout = timeout
        self.cache = cache
        self.policy = policy or CallPolicy()
        self.guard_rules = guard_rules or GuardRules()
        self._api_key = api_key
        self._sleep = sleep
        self._clock = clock
        self._counters = _Counters()
        self._breaker_lock = threading.Lock()
        self._consecutive_failures = 0
        self._open_until = 0.0
        self._last_failure = ""

    def __repr__(self) -> str:
        key = "set" if self._api_key is not None else "none"
        return (
            f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r}, "
            f"timeout={self.timeout:g}, api_key={key})"
        )

    # -- what a subclass provides ------------------------------------------------------

    def _complete(self, messages: list[dict[str, str]]) -> ChatReply:
        """Send one chat-completion request; raise :class:`ProviderFailure` on failure."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the HTTP client this explainer created (an injected one is left open)."""

    def __enter__(self) -> ChatExplainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the shared behaviour -------------------------------------------------------------

    @property
    def totals(self) -> TokenTotals:
        """Running totals since this explainer was built."""
        return self._counters.snapshot()

    def params(self) -> dict[str, Any]:
        """Call parameters that change the answer (part of the cache key)."""
        return {
            "temperature": self.policy.temperature,
            "max_tokens": self.policy.max_tokens,
            "response_format": "json_object",
        }

    def explain(self, request: ExplanationRequest) -> Explanation:
        """The model's explanation, or the template with the reason; never raises."""
        requests = 0
        try:
            explanation, requests = self._explain(request)
        except Exception as exc:  # a bug here must not block a recommendation either
            log.error("LLM explainer failed unexpectedly", exc_info=True)
            reason = self._redact(f"internal error: {type(exc).__name__}: {exc}")
            explanation = _template(request, self.provider, reason)
        if explanation.fallback_reason:
            log.warning(
                "LLM explanation of %s for %s replaced by the template: %s",
                request.kind,
                request.target,
                explanation.fallback_reason,
            )
        self._counters.record(explanation, requests)
        return explanation

    def _explain(self, request: ExplanationRequest) -> tuple[Explanation, int]:
        assert self.model is not None
        messages = build_messages(request)
        key = cache_key(self.provider, self.base_url, self.model, messages, self.params())
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None and not self._rejection(hit.reply, request):
                return self._accepted(hit.reply, hit.model, None, cached=True), 0
        skipped = self._breaker_reason()
        if skipped:
            return _template(request, self.provider, skipped), 0
        reply, failure, requests = self._call(messages)
        if reply is None:
            return _template(request, self.provider, failure), requests
        try:
            parsed = parse_reply(reply.content)
        except ReplyError as exc:
            reason = self._redact(f"{self.provider} {reply.model}: {exc}")
            return _template(request, self.provider, reason, reply.usage), requests
        rejection = self._rejection(parsed, request)
        if rejection:
            reason = f"{self.provider} {reply.model}: {rejection}"
            return _template(request, self.provider, self._redact(reason), reply.usage), requests
        if self.cache is not None:
            entry = CachedReply(
                key=key, provider=self.provider, model=reply.model, reply=parsed, usage=reply.usage
            )
            self.cache.put(entry)
        return self._accepted(parsed, reply.model, reply.usage, cached=False), requests

    def _accepted(
        self, reply: ModelReply, model: str, usage: TokenUsage | None, *, cached: bool
    ) -> Explanation:
        return Explanation(
            summary=reply.summary,
            rationale=reply.rationale,
            risks=list(reply.risks),
            source="llm",
            provider=self.provider,
            model=model,
            usage=usage,
            cached=cached,
        )

    def _rejection(self, reply: ModelReply, request: ExplanationRequest) -> str | None:
        text = "\n".join([reply.summary, reply.rationale, *reply.risks])
        invented = unsupported_numbers(text, request, self.guard_rules)
        if not invented:
            return None
        shown = ", ".join(repr(n) for n in invented[:5])
        return f"number guard: the reply has numbers no figure supports ({shown})"

    def _call(self, messages: list[dict[str, str]]) -> tuple[ChatReply | None, str, int]:
        """Up to ``max_attempts`` requests; the reply, or why there is none, and the count."""
        reason = ""
        for attempt in range(1, self.policy.max_attempts + 1):
            try:
                reply = self._complete(messages)
            except ProviderFailure as failure:
                reason = self._redact(f"{self.provider} {self.base_url}: {failure.reason}")
                if not failure.retryable:
                    break
                if attempt == self.policy.max_attempts:
                    reason += f" (after {attempt} attempts)"
                    break
                wait = self.policy.delay(attempt, failure.retry_after)
                if wait is None:
                    reason += (
                        f" (the server asks to wait {failure.retry_after:g} s, more than "
                        f"the {self.policy.max_retry_after_seconds:g} s allowed)"
                    )
                    break
                log.info("%s; retrying in %.2f s", reason, wait)
                self._sleep(wait)
                continue
            self._note_success()
            return reply, "", attempt
        self._note_failure(reason)
        return None, reason, attempt

    def _breaker_reason(self) -> str | None:
        with self._breaker_lock:
            if self._clock() < self._open_until:
                return (
                    f"{self.provider} skipped: the last {self._consecutive_failures} calls "
                    f"failed (last: {self._last_failure})"
                )
            return None

    def _note_success(self) -> None:
        with self._breaker_lock:
            self._consecutive_failures = 0
            self._open_until = 0.0

    def _note_failure(self, reason: str) -> None:
        with self._breaker_lock:
            self._consecutive_failures += 1
            self._last_failure = reason
            if self._consecutive_failures >= self.policy.breaker_failures:
                self._open_until = self._clock() + self.policy.breaker_cooldown_seconds

    def _redact(self, text: str) -> str:
        if self._api_key is None:
            return text
        secret = self._api_key.get_secret_value()
        return text.replace(secret, "[redacted]") if secret else text
