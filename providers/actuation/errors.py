"""Actuation errors: each names the endpoint and the deployment, never a secret."""

from __future__ import annotations

from optiinfra.errors import OptiInfraError


class ActuationError(OptiInfraError):
    """A change could not be applied, read back or reverted.

    ``endpoint`` is where the actuator talked to (a URL, a Kubernetes API path) and
    ``deployment`` what it acted on; both are in the message too."""

    def __init__(self, message: str, *, endpoint: str = "", deployment: str = "") -> None:
        where = ", ".join(
            part
            for part in (
                f"deployment {deployment}" if deployment else "",
                f"endpoint {endpoint}" if endpoint else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.endpoint = endpoint
        self.deployment = deployment


class UnsupportedChange(ActuationError):
    """The change has a key this actuator cannot apply (the message says why)."""


class UnknownActuatorKind(LookupError):
    def __init__(self, kind: str, valid: list[str]) -> None:
        super().__init__(f"unknown actuator kind {kind!r}; valid kinds: {', '.join(valid)}")
        self.kind = kind
