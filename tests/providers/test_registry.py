"""Every registered provider meets the standard (STYLE.md habit 9: tests over registries)."""

from __future__ import annotations

import pytest

from providers import Feature, get_provider_class, provider_kinds
from providers.base import Provider, UnsupportedFeature
from providers.registry import UnknownProviderKind, registered_classes

BUILTIN = [cls for cls in registered_classes() if cls.__module__.startswith("providers.")]


def test_builtin_providers_are_registered() -> None:
    assert "local" in provider_kinds()
    assert BUILTIN, "no built-in provider registered"


@pytest.mark.parametrize("cls", BUILTIN, ids=lambda c: c.kind)
def test_provider_declares_what_it_can_and_cannot_do(cls: type[Provider]) -> None:
    assert cls.kind and cls.kind == cls.kind.lower()
    assert cls.__doc__ and cls.__doc__.strip(), f"{cls.kind}: no docstring"
    assert cls.features, f"{cls.kind}: declares no feature"
    for feature in Feature:
        if feature in cls.features:
            assert feature not in cls.unsupported
        else:
            reason = cls.unsupported.get(feature)
            assert reason, f"{cls.kind}: says nothing about why it cannot {feature.value}"
            with pytest.raises(UnsupportedFeature, match=reason[:20]):
                cls.require(feature)


@pytest.mark.parametrize("cls", BUILTIN, ids=lambda c: c.kind)
def test_provider_is_found_by_kind_and_aliases(cls: type[Provider]) -> None:
    for name in (cls.kind, *cls.aliases):
        assert get_provider_class(name) is cls
        assert get_provider_class(name.upper()) is cls


def test_unknown_kind_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownProviderKind) as info:
        get_provider_class("nope")
    assert "local" in str(info.value) and "nope" in str(info.value)
