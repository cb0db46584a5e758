"""Registry from a ``providers.yaml`` ``kind`` (or alias) to its adapter class."""

from __future__ import annotations

from typing import TypeVar

from providers.base import Provider

_REGISTRY: dict[str, type[Provider]] = {}
P = TypeVar("P", bound=type[Provider])


class UnknownProviderKind(LookupError):
    def __init__(self, kind: str) -> None:
        valid = ", ".join(provider_kinds())
        super().__init__(f"unknown provider kind {kind!r}; valid kinds: {valid}")
        self.kind = kind


def register(cls: P) -> P:
    """Class decorator: make ``cls`` findable by its ``kind`` and ``aliases``."""
    for name in (cls.kind, *cls.aliases):
        key = name.lower()
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"provider kind {name!r} registered twice")
        _REGISTRY[key] = cls
    return cls


def get_provider_class(kind: str) -> type[Provider]:
    try:
        return _REGISTRY[kind.lower()]
    except KeyError:
        raise UnknownProviderKind(kind) from None


def provider_kinds() -> list[str]:
    """Every accepted kind, aliases included, sorted."""
    return sorted(_REGISTRY)


def registered_classes() -> list[type[Provider]]:
    """Each adapter class once (for tests that walk the whole registry)."""
    return sorted(set(_REGISTRY.values()), key=lambda c: c.kind)
