"""The two chat-completion explainers: Groq through its SDK, anything else through httpx.

Why two transports: the ``groq`` SDK is Groq's supported client (its error classes,
its ``retry-after`` handling, its user agent), but it hard-codes the path
``/openai/v1/chat/completions`` under its base URL, so it cannot address a generic
server's ``{base_url}/chat/completions`` (vLLM serves ``/v1/chat/completions``)
without reaching into its private request API. The OpenAI-compatible explainer
therefore posts that one documented request with httpx, as the quality judge does.

Both send ``response_format={"type": "json_object"}`` and ``temperature`` 0, and leave
retries to :class:`~optiinfra.llm.explainers.ChatExplainer` (the SDK's own retries are
off, ``max_retries=0``), so both providers follow one retry policy.
"""

from __future__ import annotations

from typing import Any

import groq
import httpx
from pydantic import SecretStr

from optiinfra.llm.explainers import (
    ChatExplainer,
    ChatReply,
    ProviderFailure,
    status_failure,
    usage_from,
)

__all__ = [
    "DEFAULT_GROQ_MODEL",
    "GROQ_API_ROOT",
    "GroqExplainer",
    "OpenAICompatibleExplainer",
    "groq_root",
]

#: The Groq SDK's base URL; it appends ``/openai/v1/...`` itself.
GROQ_API_ROOT = "https://api.groq.com"
#: Used when ``llm.model`` is not set for provider groq (a production model with JSON mode).
DEFAULT_GROQ_MODEL = "llama-3.3-70b-versatile"
_GROQ_PATH = "/openai/v1"


def groq_root(base_url: str | None) -> str:
    """The SDK base URL for a configured one. ``https://api.groq.com/openai/v1`` (the form
    the quality judge's settings use) and ``https://api.groq.com`` both give the root."""
    if not base_url:
        return GROQ_API_ROOT
    root = base_url.rstrip("/")
    return root[: -len(_GROQ_PATH)] if root.endswith(_GROQ_PATH) else root


class GroqExplainer(ChatExplainer):
    """Explanations from Groq, through the ``groq`` SDK's ``Groq`` client."""

    provider = "groq"

    def __init__(
        self,
        *,
        api_key: SecretStr,
        model: str = DEFAULT_GROQ_MODEL,
        base_url: str | None = None,
        timeout: float = 30.0,
        http_client: httpx.Client | None = None,
        **common: Any,
    ) -> None:
        root = groq_root(base_url)
        super().__init__(model=model, base_url=root, api_key=api_key, timeout=timeout, **common)
        self._client = groq.Groq(
            api_key=api_key.get_secret_value(),
            base_url=root,
            timeout=timeout,
            max_retries=0,
            http_client=http_client,
        )
        self._owns_client = http_client is None

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _complete(self, messages: list[dict[str, str]]) -> ChatReply:
        try:
            completion = self._client.chat.completions.create(
                model=self.model or DEFAULT_GROQ_MODEL,
                messages=messages,  # type: ignore[arg-type]
                response_format={"type": "json_object"},
                temperature=self.policy.temperature,
                max_tokens=self.policy.max_tokens,
            )
        except groq.APITimeoutError:
            raise ProviderFailure(f"no answer within {self.timeout:g} s", retryable=True) from None
        except groq.APIConnectionError as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection error"
            raise ProviderFailure(f"cannot connect ({cause})", retryable=True) from None
        except groq.APIStatusError as exc:
            raise status_failure(exc.status_code, exc.response.headers, exc.body) from None
        except (groq.GroqError, ValueError) as exc:  # a body the SDK cannot read
            reason = f"unreadable reply ({type(exc).__name__})"
            raise ProviderFailure(reason, retryable=False) from None
        try:
            content = completion.choices[0].message.content
            model = completion.model or self.model or DEFAULT_GROQ_MODEL
        except (AttributeError, IndexError, TypeError):
            raise ProviderFailure("the reply is not a chat completion", retryable=False) from None
        return ChatReply(content=content, model=str(model), usage=usage_from(completion.usage))


class OpenAICompatibleExplainer(ChatExplainer):
    """Explanations from any server with ``POST {base_url}/chat/completions`` (vLLM, TGI's
    Messages API, SGLang, Ollama, OpenAI), through httpx."""

    provider = "openai-compatible"

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        api_key: SecretStr | None = None,
        timeout: float = 30.0,
        http_client: httpx.Client | None = None,
        **common: Any,
    ) -> None:
        root = base_url.rstrip("/")
        super().__init__(model=model, base_url=root, api_key=api_key, timeout=timeout, **common)
        self.url = root + "/chat/completions"
        self._client = http_client or httpx.Client()
        self._owns_client = http_client is None

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _complete(self, messages: list[dict[str, str]]) -> ChatReply:
        body = {
            "model": self.model,
            "messages": messages,
            "response_format": {"type": "json_object"},
            "temperature": self.policy.temperature,
            "max_tokens": self.policy.max_tokens,
        }
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        try:
            response = self._client.post(self.url, json=body, headers=headers, timeout=self.timeout)
        except httpx.TimeoutException:
            raise ProviderFailure(f"no answer within {self.timeout:g} s", retryable=True) from None
        except httpx.TransportError as exc:
            reason = f"cannot connect ({type(exc).__name__})"
            raise ProviderFailure(reason, retryable=True) from None
        if response.status_code >= 400:
            raise status_failure(response.status_code, response.headers, _body(response))
        try:
            data = response.json()
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ProviderFailure("the reply is not a chat completion", retryable=False) from None
        model = data.get("model") if isinstance(data.get("model"), str) else None
        return ChatReply(
            content=content, model=model or str(self.model), usage=usage_from(data.get("usage"))
        )


def _body(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text
