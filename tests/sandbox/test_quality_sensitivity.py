"""The planted quantization fault: ``DeploymentSpec.quantization_sensitivity`` multiplies
the quality model's quantization and KV-cache penalties, and nothing else."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydantic import ValidationError

import optiinfra.sandbox
from optiinfra.sandbox.checks import changed_spec
from optiinfra.sandbox.fleet import load_fleet
from optiinfra.sandbox.http import HTTPError
from optiinfra.sandbox.quality import (
    MAX_ERROR,
    QualityConfig,
    QualityError,
    QualityModel,
    error_probability,
)
from optiinfra.sandbox.spec import DeploymentSpec

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"
FRAGILE = Path(optiinfra.sandbox.__file__).parent / "fleets" / "fragile.yaml"


def _spec(**changes: object) -> DeploymentSpec:
    return DeploymentSpec.model_validate(
        {"name": "svc", "model": LLAMA_8B, "gpu": "H100", **changes}
    )


def test_the_default_keeps_the_published_figures() -> None:
    spec = _spec(engine_args={"quantization": "int4"})
    assert spec.quantization_sensitivity == 1.0
    assert error_probability(QualityConfig.of(spec)) == pytest.approx(0.22, abs=5e-4)


@pytest.mark.parametrize(
    ("model", "quantization", "kv"),
    [(LLAMA_8B, "fp8", "auto"), (LLAMA_8B, "int8", "fp8"), (LLAMA_70B, "int8", "auto")],
)
@pytest.mark.parametrize("sensitivity", [0.0, 0.5, 3.0, 20.0])
def test_sensitivity_multiplies_the_quantization_penalties(
    model: str, quantization: str, kv: str, sensitivity: float
) -> None:
    def p(s: float) -> float:
        return error_probability(QualityConfig(model, quantization, kv, s))  # type: ignore[arg-type]

    assert p(sensitivity) - p(0.0) == pytest.approx(sensitivity * (p(1.0) - p(0.0)))
    assert p(0.0) == error_probability(QualityConfig(model))  # 0: quantization is free


def test_fp8_breaks_a_70b_model_at_sensitivity_100() -> None:
    # base 0.04 (flat above 70B) + size scale 0.5 x 100 x the fp8 penalty 0.005.
    assert error_probability(QualityConfig(LLAMA_70B, "fp8", "auto", 100.0)) == pytest.approx(0.29)


def test_the_error_is_still_capped() -> None:
    assert error_probability(QualityConfig(LLAMA_8B, "int4", "auto", 100.0)) == MAX_ERROR


def test_an_unquantized_model_is_not_affected() -> None:
    plain = _spec(quantization_sensitivity=1000)
    assert error_probability(QualityConfig.of(plain)) == error_probability(QualityConfig(LLAMA_8B))


@pytest.mark.parametrize("value", [-0.5, 1001, float("nan")])
def test_the_spec_refuses_a_sensitivity_out_of_range(value: float) -> None:
    with pytest.raises(ValidationError, match="quantization_sensitivity"):
        _spec(quantization_sensitivity=value)


def test_the_quality_model_refuses_a_negative_sensitivity_naming_it() -> None:
    with pytest.raises(QualityError, match="quantization_sensitivity"):
        error_probability(QualityConfig(LLAMA_8B, "fp8", "auto", -1.0))


def test_the_fault_survives_a_configuration_change() -> None:
    """A rollout changes engine arguments through /admin/config: the planted fault stays,
    so the canary meets it."""
    spec = _spec(quantization_sensitivity=100)
    changed = changed_spec(spec, {"engine_args": {"quantization": "fp8"}})
    assert changed.quantization_sensitivity == 100
    assert QualityConfig.of(changed).sensitivity == 100
    with pytest.raises(HTTPError, match="cannot change"):
        changed_spec(spec, {"quantization_sensitivity": 1})


def test_the_fragile_fleet_breaks_answers_under_fp8_only() -> None:
    [deployment] = load_fleet(FRAGILE).deployments
    assert deployment.quantization_sensitivity == 100
    fp8 = changed_spec(deployment, {"engine_args": {"quantization": "fp8"}})
    model, rng = QualityModel(), random.Random(3)
    items = model.items * 4

    def accuracy(spec: DeploymentSpec) -> float:
        answers = [model.answer(item.question, spec, rng) for item in items]
        return sum(bool(a and a.correct) for a in answers) / len(answers)

    plain, quantized = accuracy(deployment), accuracy(fp8)
    # 0.96 vs 0.71 expected; 908 draws each put both within about ±0.03.
    assert plain > 0.93 and quantized < 0.76
    assert (plain - quantized) / plain > 0.10  # past a canary's 10 % allowance
