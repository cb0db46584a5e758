"""Registry from an actuator ``kind`` (or alias) to its class, like
:mod:`providers.registry` does for collection adapters."""

from __future__ import annotations

from typing import TypeVar

from providers.actuation.base import Actuator
from providers.actuation.errors import UnknownActuatorKind

_REGISTRY: dict[str, type[Actuator]] = {}
A = TypeVar("A", bound=type[Actuator])


def register_actuator(cls: A) -> A:
    """Class decorator: make ``cls`` findable by its ``kind`` and ``aliases``."""
    for name in (cls.kind, *cls.aliases):
        key = name.lower()
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"actuator kind {name!r} registered twice")
        _REGISTRY[key] = cls
    return cls


def get_actuator_class(kind: str) -> type[Actuator]:
    try:
        return _REGISTRY[kind.lower()]
    except KeyError:
        raise UnknownActuatorKind(kind, actuator_kinds()) from None


def actuator_kinds() -> list[str]:
    """Every accepted kind, aliases included, sorted."""
    return sorted(_REGISTRY)


def registered_actuators() -> list[type[Actuator]]:
    """Each actuator class once (for tests that walk the whole registry)."""
    return sorted(set(_REGISTRY.values()), key=lambda c: c.kind)
