"""How an actuator is configured, and building one from that configuration.

``providers.yaml`` has no actuator section yet; :class:`ActuatorConfig` is the shape one
entry takes (``kind``, ``options``, ``credentials`` by environment-variable name) so that
the schema can hold it as ``ProviderConfig.actuator``. Example::

    - name: prod
      kind: prometheus
      options: {...}
      actuator:
        kind: kubernetes
        options: {namespace: inference, container: vllm}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from providers.actuation.base import Actuator
from providers.actuation.registry import get_actuator_class


class ActuatorConfig(BaseModel):
    """One actuator: which kind, its options, its credentials by variable name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(min_length=1, description="Actuator kind: sandbox, kubernetes, webhook.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Kind-specific settings (docs/actuators.md)."
    )
    credentials: dict[str, str] = Field(
        default_factory=dict,
        description="Credential name → environment variable that holds it (never the value).",
    )


def build_actuator(config: ActuatorConfig, *, where: str = "actuator", **clients: Any) -> Actuator:
    """The actuator ``config`` describes; ``clients`` are injected clients (``client=``
    for httpx actuators, ``api_client=`` for Kubernetes), for tests and shared pools."""
    cls = get_actuator_class(config.kind)
    options = cls.parse_options(config.options, where=f"{where}.options")
    return cls(options, credentials=config.credentials, **clients)  # type: ignore[call-arg]
