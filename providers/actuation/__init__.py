"""Actuators: apply a change to a fraction of a deployment, read back, revert.

The protocol and its records live here; each actuator lives with its provider
(``providers.sandbox.actuator``, ``providers.kubernetes``, ``providers.webhook``).
Importing this package registers the built-in actuators. See docs/actuators.md.
"""

from providers.actuation.base import Actuator, canary_count, scaled_total
from providers.actuation.config import ActuatorConfig, build_actuator
from providers.actuation.errors import ActuationError, UnknownActuatorKind, UnsupportedChange
from providers.actuation.records import (
    ActuationStatus,
    Baseline,
    Change,
    RunningState,
    Target,
    Variant,
    step_key,
)
from providers.actuation.registry import (
    actuator_kinds,
    get_actuator_class,
    register_actuator,
    registered_actuators,
)

__all__ = [
    "ActuationError",
    "ActuationStatus",
    "Actuator",
    "ActuatorConfig",
    "Baseline",
    "Change",
    "RunningState",
    "Target",
    "UnknownActuatorKind",
    "UnsupportedChange",
    "Variant",
    "actuator_kinds",
    "build_actuator",
    "canary_count",
    "get_actuator_class",
    "register_actuator",
    "registered_actuators",
    "scaled_total",
    "step_key",
]


def _register_builtins() -> None:
    """Import the built-in actuators (they register themselves)."""
    import providers.kubernetes.actuator
    import providers.sandbox.actuator
    import providers.webhook.actuator  # noqa: F401


_register_builtins()
