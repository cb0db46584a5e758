"""Every registered actuator meets the standard, and the shared records behave:
normalised changes, stable idempotency keys, ceil rounding, baselines that survive JSON."""

from __future__ import annotations

import pytest

from optiinfra.errors import ConfigError
from providers.actuation import (
    Actuator,
    ActuatorConfig,
    Baseline,
    Change,
    Target,
    UnknownActuatorKind,
    UnsupportedChange,
    actuator_kinds,
    build_actuator,
    canary_count,
    get_actuator_class,
    registered_actuators,
    scaled_total,
    step_key,
)

TARGET = Target(provider="p", deployment="d")


def test_the_three_builtin_actuators_are_registered() -> None:
    assert {"sandbox", "kubernetes", "k8s", "webhook"} <= set(actuator_kinds())


@pytest.mark.parametrize("cls", registered_actuators(), ids=lambda c: c.kind)
def test_actuator_declares_its_options_and_changes(cls: type[Actuator]) -> None:
    assert cls.kind == cls.kind.lower() and cls.__doc__ and cls.description
    for name in (cls.kind, *cls.aliases):
        assert get_actuator_class(name.upper()) is cls
    for name, field in cls.Options.model_fields.items():
        assert field.description, f"{cls.kind}: option {name} has no description"
    assert not cls.changes & set(cls.unsupported)
    if not cls.accepts_any_change:
        assert cls.changes, f"{cls.kind}: applies no change"
        with pytest.raises(UnsupportedChange, match="replicas_by_hour: an hour-of-day"):
            cls.check(Change.model_validate({"replicas_by_hour": {"9": 3}}), TARGET)
        assert "commitment" in cls.unsupported


def test_unknown_kind_and_bad_options_are_named() -> None:
    with pytest.raises(UnknownActuatorKind, match=r"'nope'.*valid kinds: .*sandbox"):
        get_actuator_class("nope")
    with pytest.raises(ConfigError, match=r"providers.x.actuator.options.control_url"):
        build_actuator(ActuatorConfig(kind="sandbox"), where="providers.x.actuator")


def test_change_moves_top_level_engine_args_and_keeps_unknown_keys() -> None:
    change = Change.model_validate(
        {"quantization": "fp8", "engine_args": {"max_num_seqs": 8}, "replicas_by_hour": {}}
    )
    assert change.engine_args == {"max_num_seqs": 8, "quantization": "fp8"}
    assert change.keys() == {"engine_args", "replicas_by_hour"}
    assert Change.model_validate(change.as_dict()).key == change.key
    with pytest.raises(ValueError, match="market"):
        Change.model_validate({"market": "cheap"})


def test_step_keys_are_stable_and_distinct() -> None:
    a = Change.model_validate({"engine_args": {"a": 1, "b": 2}})
    b = Change.model_validate({"engine_args": {"b": 2, "a": 1}})
    assert step_key("apply", TARGET, a, 0.1) == step_key("apply", TARGET, b, 0.1)
    assert step_key("apply", TARGET, a, 0.1) != step_key("apply", TARGET, a, 0.5)
    assert step_key("apply", TARGET, a, 0.1) != step_key("revert", TARGET, None, 0.1)


@pytest.mark.parametrize(
    ("fraction", "total", "count"),
    [(0.1, 4, 1), (0.5, 4, 2), (1.0, 4, 4), (0.0, 4, 0), (0.1, 10, 1), (0.3, 10, 3), (0.5, 1, 1)],
)
def test_canary_count_rounds_up(fraction: float, total: int, count: int) -> None:
    assert canary_count(fraction, total) == count


def test_scaled_total_moves_towards_the_new_count() -> None:
    assert [scaled_total(f, 10, 0) for f in (0.1, 0.5, 1.0)] == [9, 5, 0]
    assert [scaled_total(f, 2, 5) for f in (0.1, 0.5, 1.0)] == [3, 4, 5]


def test_baseline_survives_json() -> None:
    baseline = Baseline(target=TARGET, kind="sandbox", replicas=3, config={"gpu": "L4"},
                        units={"s-0": {"gpu": "L4"}}, data={"servers": ["s-0"]})  # fmt: skip
    assert Baseline.model_validate_json(baseline.model_dump_json()) == baseline
