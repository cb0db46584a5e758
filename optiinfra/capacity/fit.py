"""Fitting the step-time efficiencies on Argonne's vLLM rows, and how wrong the fit is.

The rows (``optiinfra.catalog.benchmarks.argonne_results``) are static batches: ``B``
prompts of ``I`` tokens submitted at once, each generating ``O`` tokens, timed end to
end, on an A100 40 GB SXM or an H100 SXM with vLLM (fp16 unless Fig 3 says otherwise,
tensor parallel 1-4). We replay each row through :mod:`optiinfra.capacity.physics`:

- vLLM (the V0 engine Argonne ran) holds as many sequences as their full KV cache fits
  (``kv_capacity / (I + O)``, at most 256); a larger batch runs in ``B / c`` waves;
- a wave is a prefill of ``c x I`` tokens in steps of ``max(max_model_len, 2048)``
  tokens, then ``O - 1`` decode steps at mean context ``I + O/2`` (the first token comes
  out of the prefill);
- Fig 22's "TTFT" rows are the same batch with one output token: a prefill alone.

The eight constants are fitted by ``scipy.optimize.least_squares`` on the log of
predicted / measured time (every row weighs the same whatever its scale; a soft-L1 loss
keeps a few odd rows from steering the fit). Rows whose config does not fit in memory by
our memory model, or whose model the catalog lacks, are left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from optiinfra.capacity.memory import memory_fit
from optiinfra.capacity.physics import (
    Deployment,
    Efficiencies,
    decode_step_time,
    prefill_time,
    resolve,
)
from optiinfra.capacity.records import CapacityError, ServingConfig
from optiinfra.catalog import CatalogError, model_spec
from optiinfra.catalog.benchmarks import argonne_results

_KEY = [
    "gpu",
    "model",
    "tensor_parallel",
    "weight_dtype",
    "kv_cache_dtype",
    "input_tokens",
    "output_tokens",
    "batch_size",
    "kind",
]
PARAMS = (
    "compute",
    "bandwidth",
    "step_overhead_s",
    "per_sequence_s",
    "allreduce_s",
    "quantized_weight_efficiency",
    "fp8_kv_native",
    "fp8_kv_emulated",
)
_START = np.log([0.5, 0.7, 3e-3, 2e-5, 2e-5, 0.8, 1.5, 2.0])
_LOWER = np.log([0.05, 0.05, 1e-5, 1e-8, 1e-7, 0.2, 1.0, 1.0])
_UPPER = np.log([1.0, 1.0, 0.05, 1e-3, 1e-3, 1.0, 30.0, 30.0])


@dataclass(frozen=True)
class _Group:
    """Rows sharing one deployment, as arrays, with the concurrency their KV allows."""

    dep: Deployment
    index: np.ndarray
    batch: np.ndarray
    inputs: np.ndarray
    outputs: np.ndarray
    concurrency: np.ndarray
    chunk: float


def benchmark_rows() -> pd.DataFrame:
    """Argonne vLLM rows on catalog GPUs and models, one per distinct run.

    Columns: the run's key, ``kind`` (``latency``: whole static batch; ``ttft``: the
    batch's prefill), ``measured_s`` (mean over the tables that repeat the run),
    ``measured_tok_s`` (prompt + output tokens per second; NaN for ttft rows) and
    ``repeats``.
    """
    df = argonne_results()
    df = df[(df["framework"] == "vLLM") & df["gpu"].notna()].copy()
    known = []
    for name in df["model"].unique():
        try:
            model_spec(name)
            known.append(name)
        except CatalogError:
            pass
    df = df[df["model"].isin(known)]
    ttft = df[df["ttft_s"].notna()].copy()
    ttft["kind"] = "ttft"
    ttft["output_tokens"] = 1
    ttft["measured_s"] = ttft["ttft_s"]
    lat = df[df["latency_s"].notna()].copy()
    lat["kind"] = "latency"
    lat["measured_s"] = lat["latency_s"]
    rows = pd.concat([lat, ttft], ignore_index=True)
    rows["tensor_parallel"] = rows["tensor_parallel"].astype(int)
    out = (
        rows.groupby(_KEY, sort=True)
        .agg(measured_s=("measured_s", "mean"), repeats=("measured_s", "size"))
        .reset_index()
    )
    tokens = out["batch_size"] * (out["input_tokens"] + out["output_tokens"])
    out["measured_tok_s"] = np.where(out["kind"] == "latency", tokens / out["measured_s"], np.nan)
    return out


def _config(row: pd.Series) -> ServingConfig:
    model = model_spec(str(row["model"]))
    return ServingConfig(
        gpu=str(row["gpu"]),
        model=model.name,
        weight_dtype=str(row["weight_dtype"]),
        kv_cache_dtype=str(row["kv_cache_dtype"]),
        tensor_parallel=int(row["tensor_parallel"]),
        max_num_batched_tokens=max(model.max_context, 2048),  # V0: no chunked prefill
        max_model_len=model.max_context,
    )


@cache
def _groups() -> tuple[pd.DataFrame, tuple[_Group, ...]]:
    rows = benchmark_rows()
    rows["fits"] = True
    groups: list[_Group] = []
    for _, part in rows.groupby(
        ["gpu", "model", "tensor_parallel", "weight_dtype", "kv_cache_dtype"], sort=True
    ):
        config = _config(part.iloc[0])
        dep = resolve(config)
        fit = memory_fit(config, dep)
        seq_tokens = part["input_tokens"] + part["output_tokens"]
        concurrency = np.minimum(
            part["batch_size"], np.minimum(256, fit.kv_capacity_tokens // seq_tokens)
        ).to_numpy(dtype=float)
        ok = concurrency >= 1
        rows.loc[part.index, "fits"] = ok
        if not ok.any():
            continue
        part = part[ok]
        groups.append(
            _Group(
                dep=dep,
                index=part.index.to_numpy(),
                batch=part["batch_size"].to_numpy(dtype=float),
                inputs=part["input_tokens"].to_numpy(dtype=float),
                outputs=part["output_tokens"].to_numpy(dtype=float),
                concurrency=concurrency[ok],
                chunk=float(config.max_num_batched_tokens or 2048),
            )
        )
    return rows, tuple(groups)


def static_batch_seconds(
    dep: Deployment,
    eff: Efficiencies,
    batch: np.ndarray,
    inputs: np.ndarray,
    outputs: np.ndarray,
    concurrency: np.ndarray,
    chunk: float,
) -> np.ndarray:
    """Predicted wall time of static batches (see the module docstring)."""
    waves = batch / concurrency
    prefill = prefill_time(dep, eff, inputs, sequences=concurrency, chunk_tokens=chunk)
    decode = (outputs - 1.0) * decode_step_time(dep, eff, concurrency, inputs + outputs / 2.0)
    return np.asarray(waves * (prefill + decode), dtype=float)


def _efficiencies(theta: np.ndarray) -> Efficiencies:
    values = np.exp(theta)
    return Efficiencies(*(float(v) for v in values))


def predict_rows(eff: Efficiencies) -> pd.DataFrame:
    """Every benchmark row with ``predicted_s``, ``predicted_tok_s`` and ``rel_error``
    (predicted / measured - 1, on time for ttft rows, on throughput otherwise); rows that
    do not fit in memory by our model have NaN predictions and ``fits`` False."""
    rows, groups = _groups()
    rows = rows.copy()
    rows["predicted_s"] = np.nan
    for g in groups:
        rows.loc[g.index, "predicted_s"] = static_batch_seconds(
            g.dep, eff, g.batch, g.inputs, g.outputs, g.concurrency, g.chunk
        )
    tokens = rows["batch_size"] * (rows["input_tokens"] + rows["output_tokens"])
    rows["predicted_tok_s"] = np.where(
        rows["kind"] == "latency", tokens / rows["predicted_s"], np.nan
    )
    rows["rel_error"] = np.where(
        rows["kind"] == "latency",
        rows["predicted_tok_s"] / rows["measured_tok_s"] - 1.0,
        rows["predicted_s"] / rows["measured_s"] - 1.0,
    )
    return rows


def _log_residuals(theta: np.ndarray) -> np.ndarray:
    rows, groups = _groups()
    eff = _efficiencies(theta)
    parts = []
    for g in groups:
        predicted = static_batch_seconds(
            g.dep, eff, g.batch, g.inputs, g.outputs, g.concurrency, g.chunk
        )
        parts.append(np.log(predicted) - np.log(rows.loc[g.index, "measured_s"].to_numpy()))
    return np.concatenate(parts)


def refit() -> Efficiencies:
    """Fit the eight constants afresh on the Argonne rows (deterministic; ~seconds).

    Used to produce :mod:`optiinfra.capacity.fitted` and by the test that checks the
    shipped constants still equal a re-fit.
    """
    result = least_squares(
        _log_residuals,
        _START,
        bounds=(_LOWER, _UPPER),
        loss="soft_l1",
        f_scale=0.1,
        x_scale=1.0,
        method="trf",
    )
    if not result.success:
        raise CapacityError(f"capacity fit did not converge: {result.message}")
    return _efficiencies(result.x)


def log_residual_quantiles(
    eff: Efficiencies, low: float = 0.05, high: float = 0.95
) -> tuple[float, float]:
    """Quantiles of log(predicted time / measured time) over the fitted rows: the
    uncertainty band every prediction carries (time factors ``exp(q)``)."""
    residuals = _log_residuals(np.log([getattr(eff, p) for p in PARAMS]))
    return float(np.quantile(residuals, low)), float(np.quantile(residuals, high))


def fitted_module_source() -> str:
    """The text of :mod:`optiinfra.capacity.fitted` for a fresh fit (how it was made)."""
    eff = refit()
    low, high = log_residual_quantiles(eff)
    fields = "\n".join(f"    {name}={getattr(eff, name)!r}," for name in PARAMS)
    return (
        '"""Constants fitted on the Argonne vLLM rows by ``optiinfra.capacity.fit.refit``.\n\n'
        "Generated: ``python -m optiinfra.capacity.fit > optiinfra/capacity/fitted.py``.\n"
        "``tests/capacity/test_fit.py`` checks they still equal a re-fit.\n"
        '"""\n\n'
        "from optiinfra.capacity.physics import Efficiencies\n\n"
        f"EFFICIENCIES = Efficiencies(\n{fields}\n)\n\n"
        "#: 5th / 95th percentile of log(predicted time / measured time) over the rows.\n"
        f"LOG_RESIDUAL_BAND = ({low!r}, {high!r})\n"
    )


if __name__ == "__main__":
    print(fitted_module_source(), end="")
