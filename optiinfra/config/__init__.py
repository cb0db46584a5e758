"""Configuration: the ``providers.yaml`` schema, its loader and the commented example."""

from optiinfra.config.example import EXAMPLE_CONFIG
from optiinfra.config.loader import (
    default_config,
    load_config,
    load_yaml_model,
    validate_config_file,
    write_example_config,
)
from optiinfra.config.schema import (
    DEFAULT_TENANT,
    SLO,
    LLMConfig,
    OptiInfraConfig,
    OptimizeSettings,
    Policy,
    ProviderConfig,
    StoreURLs,
    Tenant,
    parse_duration,
)

__all__ = [
    "DEFAULT_TENANT",
    "EXAMPLE_CONFIG",
    "SLO",
    "LLMConfig",
    "OptiInfraConfig",
    "OptimizeSettings",
    "Policy",
    "ProviderConfig",
    "StoreURLs",
    "Tenant",
    "default_config",
    "load_config",
    "load_yaml_model",
    "parse_duration",
    "validate_config_file",
    "write_example_config",
]
