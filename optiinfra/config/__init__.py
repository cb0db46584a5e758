"""Configuration: the ``providers.yaml`` schema and its loader."""

from optiinfra.config.schema import (
    SLO,
    LLMConfig,
    OptiInfraConfig,
    Policy,
    ProviderConfig,
    StoreURLs,
    Tenant,
    parse_duration,
)

__all__ = [
    "SLO",
    "LLMConfig",
    "OptiInfraConfig",
    "Policy",
    "ProviderConfig",
    "StoreURLs",
    "Tenant",
    "parse_duration",
]
