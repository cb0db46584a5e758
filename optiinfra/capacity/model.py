"""The capacity model agents call: memory fit, serving prediction, SLO-bound rate,
calibration against the fleet's own metrics.

Example::

    >>> model = CapacityModel.default()
    >>> cfg = ServingConfig(gpu="L4", model="llama-3-8b", weight_dtype="fp8", max_model_len=8192)
    >>> rate = model.max_rate(cfg, Workload(1000, 200), ttft_p95_s=2.0, itl_p95_s=0.1)
    >>> 0 < rate.low <= rate.value <= rate.high
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import pandas as pd

from optiinfra.capacity import calibration
from optiinfra.capacity.calibration import Correction
from optiinfra.capacity.fit import predict_rows, refit
from optiinfra.capacity.fitted import EFFICIENCIES, LOG_RESIDUAL_BAND
from optiinfra.capacity.memory import memory_fit
from optiinfra.capacity.physics import Deployment, Efficiencies, decode_step_time, resolve
from optiinfra.capacity.queueing import Replica, SteadyState
from optiinfra.capacity.records import (
    CapacityError,
    Estimate,
    MemoryFit,
    Observation,
    ServingConfig,
    ServingPrediction,
    Workload,
)
from optiinfra.catalog.benchmarks import ARGONNE_GPUS

#: GPUs the fit saw; others are predicted from their spec sheets with a wider interval.
BENCHMARKED_GPUS = frozenset(ARGONNE_GPUS.values())
#: Interval widening (on log time) for a GPU the benchmark lacks, and for features the
#: benchmark never exercised with vLLM (pipeline parallel, int8 / int4 weights).
EXTRAPOLATED_GPU_WIDENING = 2.0
UNFITTED_FEATURE_WIDENING = 1.5
#: Mean context assumed for a decode-throughput observation that does not state one.
DEFAULT_OBSERVED_CONTEXT = 1024.0

_Key = tuple[str, str]


def _check_rate(rate_rps: float) -> None:
    if isinstance(rate_rps, bool) or not isinstance(rate_rps, int | float):
        raise CapacityError(f"rate_rps must be a number, got {rate_rps!r}")
    if not math.isfinite(rate_rps) or rate_rps < 0:
        raise CapacityError(f"rate_rps must be a finite number >= 0, got {rate_rps!r}")


def _check_slo(name: str, value: float | None) -> None:
    if value is None:
        return
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise CapacityError(f"{name} must be a finite number > 0 or None, got {value!r}")


def _estimate(values: Sequence[float], unit: str) -> Estimate:
    """Central value first, then the two band ends, in any order."""
    return Estimate(value=values[0], low=min(values), high=max(values), unit=unit)


@dataclass(frozen=True)
class CapacityModel:
    """Fitted step-time constants + the fleet's corrections; immutable (``calibrate``
    returns a new model)."""

    efficiencies: Efficiencies = EFFICIENCIES
    log_band: tuple[float, float] = LOG_RESIDUAL_BAND
    corrections: dict[_Key, Correction] = field(default_factory=dict)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def default(cls) -> CapacityModel:
        """The model fitted on the public tables (shipped constants; cached)."""
        return _default_model()

    @classmethod
    def refitted(cls) -> CapacityModel:
        """A model fitted afresh on the Argonne rows (about a second)."""
        from optiinfra.capacity.fit import log_residual_quantiles

        eff = refit()
        return cls(efficiencies=eff, log_band=log_residual_quantiles(eff))

    # -- lookups ------------------------------------------------------------------------
    def memory(self, config: ServingConfig) -> MemoryFit:
        """Whether ``config`` fits per GPU, its KV capacity and shortfall."""
        return memory_fit(config)

    def correction_factor(self, config: ServingConfig) -> float:
        """The calibration time factor applied to ``config``'s (gpu, model); 1 = none."""
        return self._factor(resolve(config))

    def _factor(self, dep: Deployment) -> float:
        key = (dep.gpu.name, dep.model.name)
        if key in self.corrections:
            return self.corrections[key].factor
        same_model = [c for (g, m), c in self.corrections.items() if m == dep.model.name]
        if not same_model:
            return 1.0
        mean = sum(math.log(c.factor) for c in same_model) / len(same_model)
        return math.exp(calibration.BORROW * mean)

    def _band(
        self, config: ServingConfig, dep: Deployment
    ) -> tuple[tuple[float, float], list[str]]:
        """Log time factors (low, high) of the uncertainty interval, and why widened."""
        low, high = min(self.log_band[0], 0.0), max(self.log_band[1], 0.0)
        notes: list[str] = []
        widen = 1.0
        if dep.gpu.name not in BENCHMARKED_GPUS:
            widen *= EXTRAPOLATED_GPU_WIDENING
            notes.append(f"{dep.gpu.name} is not in the fitted benchmark: spec-sheet estimate")
        unfitted = [
            what
            for what, present in (
                ("pipeline parallel", config.pipeline_parallel > 1),
                (f"{config.weight_dtype} weights", config.weight_dtype.lower() in {"int8", "int4"}),
            )
            if present
        ]
        if unfitted:
            widen *= UNFITTED_FEATURE_WIDENING
            notes.append(f"not in the fitted vLLM rows: {', '.join(unfitted)}")
        low, high = low * widen, high * widen
        key = (dep.gpu.name, dep.model.name)
        correction = self.corrections.get(key)
        if correction is not None:
            n = correction.observations
            shrink = math.sqrt(calibration.PRIOR_WEIGHT / (n + calibration.PRIOR_WEIGHT))
            floor = 1.645 * correction.spread
            low, high = min(low * shrink, -floor), max(high * shrink, floor)
            notes.append(f"calibrated on {n} observation(s): time factor {correction.factor:.3f}")
        return (low, high), notes

    def _cases(
        self, config: ServingConfig
    ) -> tuple[Deployment, list[Efficiencies], float, list[str]]:
        """Resolved deployment and the constants of (central, fast end, slow end)."""
        dep = resolve(config)
        factor = self._factor(dep)
        (low, high), notes = self._band(config, dep)
        base = self.efficiencies.scaled(factor)
        return dep, [base, base.scaled(math.exp(low)), base.scaled(math.exp(high))], factor, notes

    # -- predictions --------------------------------------------------------------------
    def predict(
        self, config: ServingConfig, workload: Workload, rate_rps: float
    ) -> ServingPrediction:
        """Steady-state figures of one replica of ``config`` at ``rate_rps`` requests/s."""
        _check_rate(rate_rps)
        dep, cases, factor, notes = self._cases(config)
        fit = memory_fit(config, dep)
        replicas = [Replica(dep, eff, config, fit, workload) for eff in cases]
        states = [r.steady_state(float(rate_rps)) for r in replicas]
        capacities = [r.capacity() for r in replicas]
        central = states[0]
        if not fit.fits:
            notes.append(f"does not fit: {fit.shortfall_gib:.1f} GiB short per GPU")

        def served(i: int) -> float:
            return capacities[i] if states[i].saturated else float(rate_rps)

        def values(get: Callable[[SteadyState], float]) -> list[float]:
            return [get(s) for s in states]

        top = max(central.max_sequences, 1)
        return ServingPrediction(
            config=config,
            workload=workload,
            rate_rps=float(rate_rps),
            saturated=central.saturated,
            reason=central.reason,
            capacity_rps=_estimate(capacities, "requests/s"),
            output_tokens_per_s=_estimate(
                [served(i) * workload.output_tokens for i in range(3)], "tokens/s"
            ),
            prompt_tokens_per_s=_estimate(
                [served(i) * workload.prompt_tokens for i in range(3)], "tokens/s"
            ),
            running_batch=_estimate(values(lambda s: s.running_batch), "sequences"),
            batch_occupancy=_estimate(values(lambda s: s.running_batch / top), "ratio"),
            ttft_p50_s=_estimate(values(lambda s: s.ttft_p50_s), "s"),
            ttft_p95_s=_estimate(values(lambda s: s.ttft_p95_s), "s"),
            itl_mean_s=_estimate(values(lambda s: s.itl_mean_s), "s"),
            itl_p95_s=_estimate(values(lambda s: s.itl_p95_s), "s"),
            gpu_busy_fraction=_estimate(values(lambda s: s.busy), "ratio"),
            correction=factor,
            notes=tuple(notes),
        )

    def max_rate(
        self,
        config: ServingConfig,
        workload: Workload,
        ttft_p95_s: float | None = None,
        itl_p95_s: float | None = None,
    ) -> Estimate:
        """The largest requests/s per replica whose predicted p95 TTFT and p95 ITL meet
        the SLO (None: no limit on that figure; both None: the saturation capacity).
        ``low`` assumes the slow end of the interval, ``high`` the fast end."""
        _check_slo("ttft_p95_s", ttft_p95_s)
        _check_slo("itl_p95_s", itl_p95_s)
        dep, cases, _, _ = self._cases(config)
        fit = memory_fit(config, dep)
        rates = []
        for eff in cases:
            replica = Replica(dep, eff, config, fit, workload)
            rates.append(_slo_rate(replica, ttft_p95_s, itl_p95_s))
        return _estimate(rates, "requests/s")

    def central_rate(
        self,
        config: ServingConfig,
        workload: Workload,
        ttft_p95_s: float | None = None,
        itl_p95_s: float | None = None,
    ) -> float:
        """:meth:`max_rate`'s central value alone, a third of the work: for sizing many
        candidates, where only the central estimate is compared (the chosen one's
        interval is then checked with :meth:`predict`)."""
        _check_slo("ttft_p95_s", ttft_p95_s)
        _check_slo("itl_p95_s", itl_p95_s)
        dep, cases, _, _ = self._cases(config)
        replica = Replica(dep, cases[0], config, memory_fit(config, dep), workload)
        return _slo_rate(replica, ttft_p95_s, itl_p95_s)

    def decode_tokens_per_s(
        self, config: ServingConfig, running_batch: float, context_tokens: float
    ) -> Estimate:
        """Generation tokens/s of a replica decoding ``running_batch`` sequences at a mean
        context of ``context_tokens`` with no prefill interleaved (an upper bound on the
        ``generation_tokens_per_second`` metric at that batch)."""
        for name, value in (("running_batch", running_batch), ("context_tokens", context_tokens)):
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise CapacityError(f"{name} must be a finite number > 0, got {value!r}")
        dep, cases, _, _ = self._cases(config)
        tps = [
            running_batch / float(decode_step_time(dep, e, running_batch, context_tokens))
            for e in cases
        ]
        return _estimate(tps, "tokens/s")

    # -- calibration --------------------------------------------------------------------
    def calibrate(self, observations: Sequence[Observation]) -> CapacityModel:
        """A model whose predictions for the observed (gpu, model) pairs are corrected
        (see :mod:`optiinfra.capacity.calibration` for the shrinkage and bounds).
        Observations add to those this model was already calibrated with."""
        raw: dict[_Key, list[float]] = {k: list(c.raw_factors) for k, c in self.corrections.items()}
        for obs in observations:
            if not isinstance(obs, Observation):
                raise CapacityError(
                    f"calibrate() takes Observation records, got {type(obs).__name__}"
                )
            dep = resolve(obs.config)
            raw.setdefault((dep.gpu.name, dep.model.name), []).extend(self._raw_factors(obs, dep))
        corrections = {key: calibration.pooled(factors) for key, factors in raw.items() if factors}
        return CapacityModel(self.efficiencies, self.log_band, corrections)

    def _raw_factors(self, obs: Observation, dep: Deployment) -> list[float]:
        factors: list[float] = []
        base = self.efficiencies
        if obs.generation_tokens_per_s is not None and obs.running_batch is not None:
            context = obs.mean_context_tokens or DEFAULT_OBSERVED_CONTEXT
            tau = float(decode_step_time(dep, base, obs.running_batch, context))
            predicted = obs.running_batch / tau
            factors.append(predicted / obs.generation_tokens_per_s)
        if obs.workload is not None and obs.rate_rps is not None:
            fit = memory_fit(obs.config, dep)
            workload, rate = obs.workload, obs.rate_rps

            def state(s: float) -> SteadyState:
                return Replica(dep, base.scaled(s), obs.config, fit, workload).steady_state(rate)

            if obs.ttft_p95_s is not None:
                observed = obs.ttft_p95_s
                factors.append(calibration.solve_factor(lambda s: state(s).ttft_p95_s, observed))
            if obs.itl_p95_s is not None:
                observed_itl = obs.itl_p95_s
                factors.append(calibration.solve_factor(lambda s: state(s).itl_p95_s, observed_itl))
        return factors

    # -- evidence -----------------------------------------------------------------------
    def error_report(self) -> pd.DataFrame:
        """Per Argonne vLLM row: measured vs predicted throughput (prompt + output tokens
        per second; time for the TTFT rows) and the relative error predicted/measured-1."""
        rows = predict_rows(self.efficiencies)
        columns = [
            "gpu",
            "model",
            "tensor_parallel",
            "weight_dtype",
            "kv_cache_dtype",
            "input_tokens",
            "output_tokens",
            "batch_size",
            "kind",
            "measured_s",
            "predicted_s",
            "measured_tok_s",
            "predicted_tok_s",
            "rel_error",
        ]
        return rows[columns].reset_index(drop=True)


def _slo_rate(replica: Replica, ttft: float | None, itl: float | None) -> float:
    capacity = replica.capacity()

    def meets(rate: float) -> bool:
        state = replica.steady_state(rate)
        if state.saturated:
            return False
        if ttft is not None and state.ttft_p95_s > ttft:
            return False
        return itl is None or state.itl_p95_s <= itl

    if capacity <= 0.0 or not meets(0.0):
        return 0.0
    if meets(capacity):
        return capacity
    low, high = 0.0, capacity
    for _ in range(60):
        mid = (low + high) / 2.0
        if meets(mid):
            low = mid
        else:
            high = mid
        if high - low < 1e-3 * capacity:
            break
    return low


@cache
def _default_model() -> CapacityModel:
    return CapacityModel()
