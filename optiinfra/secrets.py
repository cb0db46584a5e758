"""Where providers and the LLM client read their secrets from the environment.

(Store passwords are the stores' own business: a ClickHouse password comes from the
URL or from ``OPTIINFRA_CLICKHOUSE_PASSWORD`` through the backend's settings model,
also as a ``SecretStr``.)

``providers.yaml`` names environment variables, never values; adapters and the LLM
client ask here when they need the value, and receive a :class:`~pydantic.SecretStr`,
whose ``repr`` and ``str`` hide it, so it cannot leak through a log line or an error.
Errors name the variable and what it is for, never its value.

Example::

    token = provider_secret(config.provider("runpod"), "api_key")
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import SecretStr

from optiinfra.config.schema import LLMConfig, ProviderConfig
from optiinfra.errors import OptiInfraError

__all__ = ["llm_api_key", "provider_secret", "read_secret"]


def read_secret(
    env_var: str, *, environ: Mapping[str, str] | None = None, what: str = ""
) -> SecretStr:
    """The value of ``env_var`` (surrounding whitespace removed) as a ``SecretStr``.

    Raises :class:`OptiInfraError` naming the variable, and ``what`` it is for
    (e.g. ``"provider runpod credential api_key"``), when it is unset or empty.
    """
    source = os.environ if environ is None else environ
    purpose = f" (needed for {what})" if what else ""
    if not env_var:
        raise OptiInfraError(f"no environment variable named{purpose}")
    value = source.get(env_var)
    if value is None:
        raise OptiInfraError(f"environment variable {env_var} is not set{purpose}")
    if not value.strip():
        raise OptiInfraError(f"environment variable {env_var} is empty{purpose}")
    return SecretStr(value.strip())


def provider_secret(
    provider: ProviderConfig, credential: str, *, environ: Mapping[str, str] | None = None
) -> SecretStr:
    """Credential ``credential`` of ``provider``, read from the variable the config names."""
    variable = provider.credentials.get(credential)
    if variable is None:
        declared = ", ".join(sorted(provider.credentials)) or "none"
        raise OptiInfraError(
            f"provider {provider.name} has no credential {credential!r} in providers.yaml "
            f"(declared: {declared}); add `credentials: {{{credential}: ENV_VAR_NAME}}`"
        )
    return read_secret(
        variable, environ=environ, what=f"provider {provider.name} credential {credential}"
    )


def llm_api_key(llm: LLMConfig, *, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """The LLM's API key, or ``None`` when its provider needs none."""
    variable = llm.effective_api_key_env()
    if variable is None:
        return None
    return read_secret(variable, environ=environ, what=f"llm {llm.provider} API key")
