"""Provider adapters: one module per provider or source, on one base, found by name.

``providers.registry`` maps the ``kind`` of a ``providers.yaml`` entry to its adapter
class; importing this package registers every built-in adapter.
"""

# Built-in adapters register themselves on import.
from providers import (
    local,  # noqa: F401  (import for its registration)
    prometheus,  # noqa: F401  (import for its registration)
    quality,  # noqa: F401  (import for its registration)
    sandbox,  # noqa: F401  (import for its registration)
)
from providers.base import CollectionContext, Feature, Provider
from providers.registry import get_provider_class, provider_kinds, register

__all__ = [
    "CollectionContext",
    "Feature",
    "Provider",
    "get_provider_class",
    "provider_kinds",
    "register",
]
