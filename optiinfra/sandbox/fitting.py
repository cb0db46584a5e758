"""Fitting the step-time model's constants to the Argonne tables (an offline tool).

Run ``python -m optiinfra.sandbox.fitting --fit [--hold-out=MODEL]`` to refit; the
printed constants are then written into :data:`optiinfra.sandbox.perf.FITTED` by hand,
with the date and the figures, so a run never depends on an optimiser's output.
Without ``--fit`` it prints the comparison of the engine simulator with the tables.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import fields, replace

import pandas as pd

from optiinfra.catalog import gpu_spec
from optiinfra.errors import OptiInfraError
from optiinfra.sandbox.calibration import (
    _Case,
    _cases,
    _errors,
    _predict,
    _vllm_runs,
    compare_with_argonne,
    engine_run_batch,
    modelable_rows,
    static_batch_run,
    summarize,
)
from optiinfra.sandbox.perf import FITTED, PerfConstants, StepTimeModel

_FIT_NAMES = (
    "mem_efficiency",
    "compute_efficiency",
    "overlap",
    "step_overhead_s",
    "per_seq_overhead_s",
    "per_prefill_token_overhead_s",
    "allreduce_latency_s",
    "kv_fp8_read_cost_fp8_gpu",
    "kv_fp8_read_cost_other_gpu",
    "reserve_gib",
)


def split_groups(rows: pd.DataFrame, held_out: float = 0.3, seed: int = 7) -> pd.Series:
    """True for rows in the held-out share of config groups (GPU, model, GPUs, dtypes)."""
    keys = list(
        zip(rows.gpu, rows.model, rows.gpus, rows.weight_dtype, rows.kv_cache_dtype, strict=True)
    )
    groups = sorted(set(keys))
    rng = random.Random(seed)
    test = set(rng.sample(groups, round(held_out * len(groups))))
    return pd.Series([k in test for k in keys], index=rows.index)


_TTFT_WEIGHT = 0.2  # the six TTFT rows weigh like ~20 % of the latency rows


def _log_error(cases: list[_Case], measured: list[float], constants: PerfConstants) -> float:
    """Mean absolute log error of latency (robust to the few rows the model cannot explain)."""
    try:
        latencies, _ = _predict(cases, None, constants)
    except OptiInfraError:
        return 1e9  # a constant so large that a model no longer fits
    errs = [abs(math.log(p / m)) for p, m in zip(latencies, measured, strict=True)]
    return sum(errs) / len(errs)


def fit_constants(
    start: PerfConstants = FITTED,
    names: Iterable[str] = _FIT_NAMES,
    maxiter: int = 600,
    restarts: int = 3,
    held_out_models: Iterable[str] = (),
) -> tuple[PerfConstants, dict[str, float]]:
    """Fit the latency constants on the training groups and the Fig 22 TTFT rows; report
    train and held-out error. ``held_out_models`` holds out whole models instead of the
    random 30 % of config groups."""
    from scipy.optimize import minimize  # offline only

    names = tuple(names)
    rows = modelable_rows()
    models = set(held_out_models)
    test = rows["model"].isin(models) if models else split_groups(rows)
    train_cases, train_measured = _cases(rows[~test]), list(rows[~test]["latency_s"])
    ttft_rows, _ = _vllm_runs("fig22_ttft", start)
    ttft_cases, ttft_measured = _cases(ttft_rows), list(ttft_rows["ttft_s"])

    def unpack(x: Iterable[float]) -> PerfConstants:
        values = {n: math.exp(v) for n, v in zip(names, x, strict=True)}
        for n in ("mem_efficiency", "compute_efficiency", "overlap"):
            if n in values:
                values[n] = min(values[n], 1.0)
        return replace(start, **values)

    def loss(x: list[float]) -> float:
        constants = unpack(x)
        return _log_error(train_cases, train_measured, constants) + _TTFT_WEIGHT * _log_error(
            ttft_cases, ttft_measured, constants
        )

    x = [math.log(getattr(start, n)) for n in names]
    for _restart in range(restarts):  # a fresh simplex each time: the loss is piecewise
        x = minimize(
            loss,
            x,
            method="Nelder-Mead",
            options={"maxiter": maxiter, "xatol": 1e-3, "fatol": 1e-6},
        ).x
    fitted = unpack(x)
    fitted = fit_power(fitted)
    report = {}
    for label, part in (("train", rows[~test]), ("held_out", rows[test]), ("all", rows)):
        latencies, _ = _predict(_cases(part), None, fitted)
        for key, value in summarize(_errors(part, latencies)).items():
            report[f"{label}_{key}"] = value
    return fitted, report


def fit_power(constants: PerfConstants) -> PerfConstants:
    """Non-negative least-squares power weights (sm, tensor, dram) on the Fig 16 vLLM rows."""
    import numpy as np  # offline only
    from scipy.optimize import nnls

    df, _ = _vllm_runs("fig16_power", constants)
    a, b = [], []  # mean power = idle + (TDP - idle) x weights . mean activity
    for gpu, model, args, *sizes in _cases(df):
        step = StepTimeModel(gpu, model, args, constants)
        feats = []  # each activity averaged over the run: unit weight, no idle power
        for w in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)):
            c = replace(constants, power_sm=w[0], power_tensor=w[1], power_dram=w[2])
            run = static_batch_run(step.with_constants(replace(c, idle_power_fraction=0)), *sizes)
            feats.append(run.energy_j / run.latency_s / gpu.tdp_watts)
        a.append(feats)
    idle = constants.idle_power_fraction
    for gpu_name, watts in zip(df["gpu"], df["avg_power_w"], strict=True):
        tdp = gpu_spec(gpu_name).tdp_watts
        b.append((watts - idle * tdp) / (tdp - idle * tdp))
    coef, _residual = nnls(np.array(a), np.array(b))
    sm, tensor, dram = (float(v) for v in coef)
    return replace(constants, power_sm=sm, power_tensor=tensor, power_dram=dram)


def _main() -> None:  # pragma: no cover - offline tool
    import sys

    if "--fit" in sys.argv:
        held = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--hold-out=")]
        fitted, report = fit_constants(held_out_models=held)
        for f in fields(fitted):
            print(f"{f.name}={getattr(fitted, f.name)!r},")
        for key, value in report.items():
            print(f"{key}: {value:.4f}")
    else:
        frame = compare_with_argonne(engine_run_batch)
        print(frame.attrs)


if __name__ == "__main__":  # pragma: no cover
    _main()
