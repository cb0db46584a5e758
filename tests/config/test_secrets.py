"""Secrets come from named environment variables and never show up in text."""

from __future__ import annotations

import pytest

from optiinfra.config import LLMConfig, ProviderConfig
from optiinfra.errors import OptiInfraError
from optiinfra.secrets import llm_api_key, provider_secret, read_secret

RUNPOD = ProviderConfig(name="runpod", kind="runpod", credentials={"api_key": "RUNPOD_API_KEY"})


def test_read_secret_returns_a_hidden_value() -> None:
    secret = read_secret("TOKEN", environ={"TOKEN": "  tok-123\n"})
    assert secret.get_secret_value() == "tok-123"
    assert "tok-123" not in repr(secret)
    assert "tok-123" not in str(secret)


@pytest.mark.parametrize(("environ", "state"), [({}, "is not set"), ({"TOKEN": " \t"}, "is empty")])
def test_read_secret_names_the_variable_and_purpose(environ: dict[str, str], state: str) -> None:
    with pytest.raises(OptiInfraError) as info:
        read_secret("TOKEN", environ=environ, what="provider x credential api_key")
    assert info.value.message == (
        f"environment variable TOKEN {state} (needed for provider x credential api_key)"
    )


def test_provider_secret_reads_the_variable_the_config_names() -> None:
    secret = provider_secret(RUNPOD, "api_key", environ={"RUNPOD_API_KEY": "rp-secret"})
    assert secret.get_secret_value() == "rp-secret"
    with pytest.raises(OptiInfraError, match="RUNPOD_API_KEY is not set") as info:
        provider_secret(RUNPOD, "api_key", environ={"OTHER": "rp-secret"})
    assert "provider runpod credential api_key" in info.value.message
    assert "rp-secret" not in info.value.message


def test_provider_secret_for_an_undeclared_credential() -> None:
    with pytest.raises(OptiInfraError, match=r"no credential 'token'.*declared: api_key"):
        provider_secret(RUNPOD, "token", environ={"RUNPOD_API_KEY": "x"})


def test_llm_api_key() -> None:
    assert llm_api_key(LLMConfig(), environ={}) is None
    groq = LLMConfig(provider="groq")
    assert llm_api_key(groq, environ={"GROQ_API_KEY": "g"}).get_secret_value() == "g"  # type: ignore[union-attr]
    with pytest.raises(OptiInfraError, match="GROQ_API_KEY is not set"):
        llm_api_key(groq, environ={})
    local = LLMConfig(provider="openai-compatible", base_url="http://localhost:8000/v1")
    assert llm_api_key(local, environ={}) is None
