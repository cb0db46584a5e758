"""build_explainer: the template explainer, and what a missing key or model gives."""

from __future__ import annotations

import logging

import pytest

from optiinfra.config.schema import LLMConfig
from optiinfra.errors import OptiInfraError
from optiinfra.llm import GroqExplainer, TemplateExplainer, build_explainer, default_cache_dir
from tests.llm.standin import FAKE_KEY, KEY_ENV, ChatStandIn, sample_request


def test_provider_none_gives_the_template_without_any_request() -> None:
    with ChatStandIn() as server:
        # even with a URL configured, provider none never sends anything
        config = LLMConfig(provider="none", base_url=server.openai_base_url)
        explainer = build_explainer(config)
        explanation = explainer.explain(sample_request())
        assert server.count == 0
    assert isinstance(explainer, TemplateExplainer)
    template = sample_request().template
    assert (explanation.summary, explanation.rationale) == (template.summary, template.rationale)
    assert explanation.risks == template.risks
    assert explanation.source == "template" and explanation.fallback_reason is None
    assert explanation.usage is None
    totals = explainer.totals
    assert (totals.explanations, totals.from_template, totals.fallbacks) == (1, 1, 0)
    assert totals.requests == totals.total_tokens == 0


def test_a_missing_groq_key_falls_back_with_the_variable_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    explainer = build_explainer(LLMConfig(provider="groq"), environ={})
    explanation = explainer.explain(sample_request())

    assert isinstance(explainer, TemplateExplainer)
    assert explanation.source == "template" and explanation.provider == "groq"
    assert "GROQ_API_KEY is not set" in (explanation.fallback_reason or "")
    assert "GROQ_API_KEY" in caplog.text  # said once, at build time
    assert explainer.totals.fallbacks == 1


def test_strict_build_raises_naming_the_variable_not_its_value() -> None:
    with pytest.raises(OptiInfraError, match=f"{KEY_ENV} is empty"):
        build_explainer(
            LLMConfig(provider="groq", api_key_env=KEY_ENV), environ={KEY_ENV: "  "}, strict=True
        )


def test_a_present_key_builds_the_groq_explainer(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = LLMConfig(provider="groq", api_key_env=KEY_ENV)
    with build_explainer(config, environ={KEY_ENV: FAKE_KEY}) as explainer:
        assert isinstance(explainer, GroqExplainer)
        assert explainer.model == "llama-3.3-70b-versatile"
        assert explainer.base_url == "https://api.groq.com"
        assert FAKE_KEY not in repr(explainer)
    assert FAKE_KEY not in caplog.text


@pytest.mark.parametrize(
    "base_url", ["https://api.groq.com/openai/v1", "https://api.groq.com/", "https://api.groq.com"]
)
def test_groq_base_url_may_include_the_openai_path(base_url: str) -> None:
    config = LLMConfig(provider="groq", base_url=base_url, api_key_env=KEY_ENV)
    with build_explainer(config, environ={KEY_ENV: FAKE_KEY}) as explainer:
        assert isinstance(explainer, GroqExplainer)
        assert explainer.base_url == "https://api.groq.com"


def test_openai_compatible_without_a_model_falls_back_or_raises() -> None:
    config = LLMConfig(provider="openai-compatible", base_url="http://127.0.0.1:9/v1")
    explainer = build_explainer(config)
    reason = explainer.explain(sample_request()).fallback_reason or ""
    assert "llm.model is not set" in reason
    with pytest.raises(OptiInfraError, match=r"llm\.model"):
        build_explainer(config, strict=True)


def test_the_default_cache_lives_under_optiinfra_home(optiinfra_home: object) -> None:
    assert default_cache_dir() == optiinfra_home / "llm-cache"  # type: ignore[operator]
