"""The ``webhook`` actuator: hands each step to the user's own gateway or CD system.

See :mod:`providers.webhook.actuator` for the wire format (also in docs/actuators.md).
"""

from providers.webhook.actuator import (
    WebhookActuator,
    WebhookActuatorOptions,
    WebhookRequest,
    WebhookStatus,
)

__all__ = ["WebhookActuator", "WebhookActuatorOptions", "WebhookRequest", "WebhookStatus"]
