"""From ``providers.yaml``'s ``llm:`` section to a ready explainer.

A missing API key is the one set-up problem a user commonly makes (``provider: groq``
configured, ``GROQ_API_KEY`` not exported). Two callers want two answers:

* an optimize run must go on: by default :func:`build_explainer` returns a
  :class:`TemplateExplainer` whose every explanation carries the reason
  (``environment variable GROQ_API_KEY is not set (needed for llm groq API key)``),
  and logs that reason once as a warning;
* a check of the set-up (``optiinfra check``, a test) passes ``strict=True`` and gets an
  :class:`~optiinfra.errors.OptiInfraError` naming the variable (never its value).

Example::

    explainer = build_explainer(config.llm, cache_dir=default_cache_dir())
    explanation = explainer.explain(request)
    explainer.totals.total_tokens
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from optiinfra.config.schema import LLMConfig
from optiinfra.errors import OptiInfraError
from optiinfra.llm.cache import ResponseCache
from optiinfra.llm.clients import DEFAULT_GROQ_MODEL, GroqExplainer, OpenAICompatibleExplainer
from optiinfra.llm.explainers import CallPolicy, Explainer, TemplateExplainer
from optiinfra.llm.guard import GuardRules
from optiinfra.secrets import llm_api_key

__all__ = ["build_explainer"]

log = logging.getLogger("optiinfra.llm")


def build_explainer(
    config: LLMConfig,
    *,
    cache_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    strict: bool = False,
    policy: CallPolicy | None = None,
    guard_rules: GuardRules | None = None,
    http_client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Explainer:
    """The explainer ``config`` describes.

    ``cache_dir``: where replies are cached (``None``: no cache; the optimize flow passes
    :func:`~optiinfra.llm.cache.default_cache_dir`). ``environ``: where the API key is
    read (default ``os.environ``). ``strict``: raise instead of falling back to the
    template when the explainer cannot be set up. ``http_client``: an httpx client to
    send requests with (tests, proxies); it is not closed by the explainer.
    """
    if config.provider == "none":
        return TemplateExplainer()
    try:
        api_key = llm_api_key(config, environ=environ)
        if config.provider == "openai-compatible" and not config.model:
            raise OptiInfraError(
                "llm.model is not set: provider openai-compatible needs the name the "
                "server serves its model under"
            )
    except OptiInfraError as exc:
        if strict:
            raise
        reason = f"{exc.message}; showing template text"
        log.warning("LLM %s unavailable: %s", config.provider, reason)
        return TemplateExplainer(provider=config.provider, unavailable_reason=reason)
    common = {
        "timeout": config.timeout,
        "cache": ResponseCache(cache_dir) if cache_dir is not None else None,
        "policy": policy,
        "guard_rules": guard_rules,
        "http_client": http_client,
        "sleep": sleep,
    }
    base_url = str(config.base_url) if config.base_url is not None else None
    if config.provider == "groq":
        assert api_key is not None  # groq always names a key variable
        return GroqExplainer(
            api_key=api_key, model=config.model or DEFAULT_GROQ_MODEL, base_url=base_url, **common
        )
    assert base_url is not None and config.model is not None  # checked by LLMConfig and above
    return OpenAICompatibleExplainer(
        model=config.model, base_url=base_url, api_key=api_key, **common
    )
