"""Correction by the fleet's observed metrics: direction, shrinkage, bounds, borrowing."""

from __future__ import annotations

import math

import pytest

from optiinfra.capacity import CapacityError, CapacityModel, Observation, ServingConfig, Workload
from optiinfra.capacity.calibration import BOUNDS, PRIOR_WEIGHT

L4 = ServingConfig(gpu="L4", model="llama-3.1-8b", max_model_len=8192)
L40S = ServingConfig(gpu="L40S", model="llama-3.1-8b", max_model_len=8192)
L4_OTHER_MODEL = ServingConfig(gpu="L4", model="mistral-7b", max_model_len=8192)
CHAT = Workload(1000, 200)


@pytest.fixture(scope="module")
def model() -> CapacityModel:
    return CapacityModel.default()


def _slow_decode(model: CapacityModel, times: float, n: int) -> list[Observation]:
    """``n`` observations of decode throughput ``times`` slower than predicted."""
    out = []
    for batch in range(4, 4 + 4 * n, 4):
        predicted = model.decode_tokens_per_s(L4, batch, 1500).value
        out.append(
            Observation(
                config=L4,
                generation_tokens_per_s=predicted / times,
                running_batch=batch,
                mean_context_tokens=1500,
            )
        )
    return out


def test_calibration_moves_predictions_toward_observations(model: CapacityModel) -> None:
    before = model.decode_tokens_per_s(L4, 16, 1500).value
    calibrated = model.calibrate(_slow_decode(model, 1.5, 3))
    after = calibrated.decode_tokens_per_s(L4, 16, 1500).value
    assert before / 1.5 < after < before
    # n=3 observations of log 1.5 shrunk by 3/(3+2).
    assert calibrated.correction_factor(L4) == pytest.approx(1.5 ** (3 / (3 + PRIOR_WEIGHT)))
    assert model.correction_factor(L4) == 1.0  # the original is unchanged
    slow = calibrated.predict(L4, CHAT, 0.5)
    assert slow.itl_p95_s.value > model.predict(L4, CHAT, 0.5).itl_p95_s.value
    assert slow.correction == calibrated.correction_factor(L4)


def test_few_observations_shrink_more_than_many(model: CapacityModel) -> None:
    one = model.calibrate(_slow_decode(model, 1.5, 1)).correction_factor(L4)
    ten = model.calibrate(_slow_decode(model, 1.5, 10)).correction_factor(L4)
    assert 1.0 < one < ten < 1.5
    assert one == pytest.approx(1.5 ** (1 / 3))


def test_the_correction_is_bounded(model: CapacityModel) -> None:
    huge = model.calibrate(_slow_decode(model, 10.0, 20)).correction_factor(L4)
    tiny = model.calibrate(_slow_decode(model, 0.1, 20)).correction_factor(L4)
    assert huge == pytest.approx(BOUNDS[1]) and tiny == pytest.approx(BOUNDS[0])


def test_latency_observations_calibrate_through_the_queueing_model(model: CapacityModel) -> None:
    predicted = model.predict(L4, CHAT, 0.5)
    observed_itl = predicted.itl_p95_s.value * 1.3
    observed_ttft = predicted.ttft_p95_s.value * 1.3
    obs = [
        Observation(config=L4, workload=CHAT, rate_rps=0.5, itl_p95_s=observed_itl),
        Observation(config=L4, workload=CHAT, rate_rps=0.5, ttft_p95_s=observed_ttft),
    ]
    calibrated = model.calibrate(obs * 3)
    after = calibrated.predict(L4, CHAT, 0.5)
    assert predicted.itl_p95_s.value < after.itl_p95_s.value < observed_itl * 1.05
    assert predicted.ttft_p95_s.value < after.ttft_p95_s.value
    assert (
        calibrated.max_rate(L4, CHAT, itl_p95_s=0.1).value
        < model.max_rate(L4, CHAT, itl_p95_s=0.1).value
    )


def test_calibration_narrows_the_interval_for_the_observed_pair(model: CapacityModel) -> None:
    calibrated = model.calibrate(_slow_decode(model, 1.2, 8))
    before = model.predict(L4, CHAT, 0.5).itl_p95_s
    after = calibrated.predict(L4, CHAT, 0.5).itl_p95_s
    assert math.log(after.high / after.low) < math.log(before.high / before.low)


def test_other_gpus_of_the_model_borrow_half_and_other_models_nothing(
    model: CapacityModel,
) -> None:
    calibrated = model.calibrate(_slow_decode(model, 1.5, 10))
    own = calibrated.correction_factor(L4)
    assert calibrated.correction_factor(L40S) == pytest.approx(math.sqrt(own))
    assert calibrated.correction_factor(L4_OTHER_MODEL) == 1.0


def test_calibration_accumulates_and_rejects_empty_observations(model: CapacityModel) -> None:
    first = model.calibrate(_slow_decode(model, 1.5, 2))
    both = first.calibrate(_slow_decode(model, 1.5, 2))
    assert both.correction_factor(L4) == pytest.approx(
        model.calibrate(_slow_decode(model, 1.5, 4)).correction_factor(L4)
    )
    with pytest.raises(CapacityError, match="no observed figure"):
        Observation(config=L4)
    with pytest.raises(CapacityError, match="running_batch"):
        Observation(config=L4, generation_tokens_per_s=100.0)
    with pytest.raises(CapacityError, match="generation_tokens_per_s"):
        Observation(config=L4, generation_tokens_per_s=float("nan"), running_batch=4)
    with pytest.raises(CapacityError, match="unknown GPU 'X9'"):
        model.calibrate(
            [
                Observation(
                    config=ServingConfig(gpu="X9", model="llama-3-8b"),
                    generation_tokens_per_s=10.0,
                    running_batch=1,
                )
            ]
        )
