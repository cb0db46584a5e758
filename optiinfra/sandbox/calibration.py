"""The sandbox's step-time model against Argonne's measured vLLM runs.

:func:`compare_with_argonne` replays every Argonne LLM-Inference-Bench row the sandbox can
model -- vLLM on a GPU the catalog has (A100 40GB SXM, H100 SXM), a model in
``models.csv``, weights fp16 or fp8 and KV cache fp16 or fp8 -- as one static batch
(``batch_size`` requests arriving together, ``input_tokens`` prompt tokens each, exactly
``output_tokens`` generated) and reports predicted against measured latency and
throughput. Throughput uses Argonne's definition, ``batch x (input + output) / latency``
(see :mod:`optiinfra.catalog.benchmarks`).

How a batch is run is a seam: ``run_batch(gpu, model, args, batch, input_tokens,
output_tokens) -> (latency_s, ttft_s)``. The default, :func:`static_batch_run`, is a small
event-driven imitation of the vLLM 0.5 scheduler Argonne used: prefill-only steps of whole
prompts up to ``max_num_batched_tokens`` while the KV cache has room (1 % watermark),
then decode steps of the running sequences; when the cache is full the most recently
admitted sequence is preempted and later recomputed. Runs of decode steps between events
are integrated with Simpson's rule instead of stepped one by one (exact while the step
time is linear in context, which it is within a roofline regime).

The engine arguments of the Argonne runs: vLLM defaults of the time (``max_num_seqs``
256, ``gpu_memory_utilization`` 0.9, no chunked prefill, so ``max_num_batched_tokens`` =
max(max_model_len, 2048) with max_model_len = the model's context), no prefix caching
(random prompts), ``tensor_parallel_size`` = "Num of Hardware".

Fit (:func:`~optiinfra.sandbox.fitting.fit_constants`, offline: ``python -m
optiinfra.sandbox.fitting --fit``, about a minute): Nelder-Mead on the logs of the
latency constants, minimising the mean absolute log error of latency over the training
config groups (GPU, model, GPUs, dtypes; a seeded 30 % of the groups held out) plus 0.2
x that of the six Fig 22 TTFT rows; then the power weights by non-negative least squares
on the 16 Fig 16 vLLM rows.
Result of 2026-11-24 (the constants are :data:`optiinfra.sandbox.perf.FITTED`),
absolute relative error, median / p90:

============================  =====  ===============  ===============
rows                          count  latency          throughput
============================  =====  ===============  ===============
training groups                 421  4.3 % / 11.5 %   4.3 % / 12.4 %
held-out groups                 172  4.9 % / 10.9 %   4.8 % / 11.4 %
all                             593  4.5 % / 11.4 %   4.5 % / 12.3 %
held-out models (second fit)    128  4.8 % / 13.7 %   5.1 % / 13.8 %
============================  =====  ===============  ===============

The second fit held out every row of Qwen2-7B, Qwen2-72B and Mixtral-8x7B (the only
mixture-of-experts model). TTFT (Fig 22, 6 rows): within 2 %. Power (Fig 16, 16 rows):
median 8 %, worst 21 %. Passing the engine simulator itself as ``run_batch``
(:class:`~optiinfra.sandbox.engine.EngineCore` over the same model, every step stepped)
gave 4.4 % / 11.5 % (latency) on all 593 rows on 2026-11-24, in about 9 s.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from optiinfra.catalog import GpuSpec, ModelSpec, gpu_spec, model_spec
from optiinfra.catalog.benchmarks import argonne_results
from optiinfra.errors import OptiInfraError
from optiinfra.sandbox.perf import FITTED, PerfConstants, StepTimeModel
from optiinfra.sandbox.spec import EngineArgs

RunBatch = Callable[[GpuSpec, ModelSpec, EngineArgs, int, int, int], tuple[float, float]]

_WEIGHTS = {"fp16": "none", "fp8": "fp8", "int8": "int8"}
_KV = {"fp16": "auto", "fp8": "fp8"}


@dataclass(frozen=True, slots=True)
class BatchRun:
    """What one static batch did, in virtual time."""

    latency_s: float
    ttft_s: float  # mean time to first token over the batch
    energy_j: float  # per GPU
    steps: int
    preemptions: int


@dataclass(slots=True)
class _Seq:
    prompt: int  # tokens to (re)compute at admission
    remaining: int  # tokens still to generate
    ctx: int = 0  # tokens in the KV cache
    first_token: float | None = None


def static_batch_run(
    model: StepTimeModel, batch: int, input_tokens: int, output_tokens: int
) -> BatchRun:
    """Run ``batch`` identical requests arriving at t=0 through a vLLM-0.5-like scheduler."""
    args = model.args
    cap = model.kv_cache_tokens
    watermark = 0.01 * cap
    if input_tokens + output_tokens > cap:
        raise OptiInfraError(
            f"one sequence of {input_tokens + output_tokens} tokens does not fit in the KV "
            f"cache of {cap} tokens"
        )
    waiting = deque(_Seq(input_tokens, output_tokens) for _ in range(batch))
    running: list[_Seq] = []
    finished: list[_Seq] = []
    used = 0
    t = energy = 0.0
    steps = preemptions = 0
    budget = args.max_num_batched_tokens
    while waiting or running:
        chosen: list[_Seq] = []
        room = min(args.max_num_seqs - len(running), batch)
        while waiting and len(chosen) < room and used + waiting[0].prompt + watermark <= cap:
            seq = waiting.popleft()
            used += seq.prompt
            chosen.append(seq)
        if chosen:
            total = sum(s.prompt for s in chosen)
            attended = sum(s.prompt * s.prompt // 2 for s in chosen)
            chunks = max(1, math.ceil(total / budget))
            for i in range(chunks):
                n = min(budget, total - i * budget)
                cost = model.step(n, 0, 0, attended * n // total)
                t += cost.seconds
                energy += cost.seconds * cost.power_watts
                steps += 1
            for s in chosen:
                s.ctx = s.prompt
                s.remaining -= 1
                if s.first_token is None:
                    s.first_token = t
                if s.remaining <= 0:
                    used -= s.ctx
                    finished.append(s)
                else:
                    running.append(s)
            continue
        if not running:  # nothing admitted and nothing running: cannot happen (cap check)
            raise OptiInfraError("static batch stalled: no sequence fits the KV cache")
        n = len(running)
        while cap - used < n and len(running) > 1:  # preempt the newest by recomputation
            victim = running.pop()
            used -= victim.ctx
            victim.prompt = victim.ctx
            waiting.appendleft(victim)
            preemptions += 1
            n -= 1
        k = max(1, min(min(s.remaining for s in running), (cap - used) // n))
        c0 = sum(s.ctx for s in running)
        # k decode steps with context c0, c0 + n, ...: Simpson's rule on first, middle, last
        costs = [model.step(0, n, c0 + j * (k - 1) * n // 2) for j in (0, 1, 2)]
        for weight, cost in zip((k / 6, 4 * k / 6, k / 6), costs, strict=True):
            t += weight * cost.seconds
            energy += weight * cost.seconds * cost.power_watts
        steps += k
        used += k * n
        still: list[_Seq] = []
        for s in running:
            s.ctx += k
            s.remaining -= k
            if s.remaining <= 0:
                used -= s.ctx
                finished.append(s)
            else:
                still.append(s)
        running = still
    ttft = sum(s.first_token or 0.0 for s in finished) / max(1, len(finished))
    return BatchRun(t, ttft, energy, steps, preemptions)


def default_run_batch(
    gpu: GpuSpec,
    model: ModelSpec,
    args: EngineArgs,
    batch: int,
    input_tokens: int,
    output_tokens: int,
) -> tuple[float, float]:
    """The default ``run_batch``: :func:`static_batch_run` over :class:`StepTimeModel`."""
    run = static_batch_run(StepTimeModel(gpu, model, args), batch, input_tokens, output_tokens)
    return run.latency_s, run.ttft_s


def engine_run_batch(
    gpu: GpuSpec,
    model: ModelSpec,
    args: EngineArgs,
    batch: int,
    input_tokens: int,
    output_tokens: int,
) -> tuple[float, float]:
    """A ``run_batch`` through the sandbox's own engine simulator: ``batch`` requests
    arrive together and run to completion in virtual time, without noise. This is what
    a sandbox server does, so comparing it with the tables measures the sandbox."""
    from optiinfra.sandbox.engine import EngineCore, SimRequest

    engine = EngineCore(StepTimeModel(gpu, model, args), args, noise=0.0)
    ttfts: list[float] = []
    for i in range(batch):
        engine.submit(
            SimRequest(
                f"argonne-{i}",
                0.0,
                input_tokens,
                output_tokens,
                output_tokens,
                on_finished=lambda _req, rec: ttfts.append(rec.ttft_seconds),
            )
        )
    latency = engine.run_to_completion()
    return latency, sum(ttfts) / max(1, len(ttfts))


def argonne_engine_args(
    model: ModelSpec, gpus: int, weight_dtype: str = "fp16", kv_cache_dtype: str = "fp16"
) -> EngineArgs:
    """The engine arguments of an Argonne vLLM run (vLLM 0.5 defaults, tensor parallel)."""
    return EngineArgs(
        max_num_seqs=256,
        max_num_batched_tokens=max(model.max_context, 2048),
        gpu_memory_utilization=0.9,
        enable_prefix_caching=False,
        enable_chunked_prefill=False,
        quantization=_WEIGHTS[weight_dtype],  # type: ignore[arg-type]
        kv_cache_dtype=_KV[kv_cache_dtype],  # type: ignore[arg-type]
        tensor_parallel_size=gpus,
    )


def modelable_rows() -> pd.DataFrame:
    """The Argonne latency rows the sandbox can model (All_results + Fig 3's non-fp16)."""
    df = argonne_results()
    keep = df["table"].isin(["all", "fig3_quant"]) & (df["framework"] == "vLLM")
    keep &= df["gpu"].notna() & df["latency_s"].notna()
    keep &= df["weight_dtype"].isin(list(_WEIGHTS)) & df["kv_cache_dtype"].isin(list(_KV))
    # Fig 3's fp16/fp16 rows repeat All_results' runs of the same configuration
    keep &= ~(
        (df["table"] == "fig3_quant")
        & (df["weight_dtype"] == "fp16")
        & (df["kv_cache_dtype"] == "fp16")
    )
    df = df[keep]
    known = df["model"].map(_known_model)
    return df[known].reset_index(drop=True)


def _known_model(name: str) -> bool:
    try:
        model_spec(name)
    except OptiInfraError:
        return False
    return True


_Case = tuple[GpuSpec, ModelSpec, EngineArgs, int, int, int]


def _cases(rows: pd.DataFrame) -> list[_Case]:
    return [
        (
            gpu_spec(r.gpu),
            model_spec(r.model),
            argonne_engine_args(model_spec(r.model), r.gpus, r.weight_dtype, r.kv_cache_dtype),
            r.batch_size,
            r.input_tokens,
            r.output_tokens,
        )
        for r in rows.itertuples(index=False)
    ]


def _predict(
    cases: list[_Case], run_batch: RunBatch | None, constants: PerfConstants
) -> tuple[list[float], list[float]]:
    latencies, ttfts = [], []
    for gpu, model, args, batch, prompt, output in cases:
        if run_batch is None:
            run = static_batch_run(
                StepTimeModel(gpu, model, args, constants), batch, prompt, output
            )
            latency, ttft = run.latency_s, run.ttft_s
        else:
            latency, ttft = run_batch(gpu, model, args, batch, prompt, output)
        latencies.append(latency)
        ttfts.append(ttft)
    return latencies, ttfts


def compare_with_argonne(
    run_batch: RunBatch | None = None, constants: PerfConstants = FITTED
) -> pd.DataFrame:
    """Predicted vs measured latency and throughput for every modelable Argonne row.

    Relative errors are ``predicted / measured - 1``. The frame's ``attrs`` hold the
    summary (:func:`summarize`): row count, median and p90 of the absolute relative errors
    of latency and throughput.
    """
    rows = modelable_rows()
    latencies, ttfts = _predict(_cases(rows), run_batch, constants)
    out = _errors(rows, latencies)
    out.insert(out.columns.get_loc("predicted_latency_s") + 1, "predicted_ttft_s", ttfts)
    out.attrs.update(summarize(out))
    return out


def _errors(rows: pd.DataFrame, latencies: list[float]) -> pd.DataFrame:
    keys = ["table", "gpu", "gpus", "model", "input_tokens", "output_tokens", "batch_size"]
    out = rows[[*keys, "weight_dtype", "kv_cache_dtype"]].copy()
    out["measured_latency_s"] = rows["latency_s"]
    out["predicted_latency_s"] = latencies
    out["measured_throughput_tok_s"] = rows["throughput_tok_s"]
    tokens = rows["batch_size"] * (rows["input_tokens"] + rows["output_tokens"])
    out["predicted_throughput_tok_s"] = tokens / out["predicted_latency_s"]
    out["latency_rel_error"] = out["predicted_latency_s"] / out["measured_latency_s"] - 1
    out["throughput_rel_error"] = (
        out["predicted_throughput_tok_s"] / out["measured_throughput_tok_s"] - 1
    )
    return out


def summarize(frame: pd.DataFrame) -> dict[str, float]:
    """Row count and median / p90 absolute relative error of latency and throughput."""
    lat = frame["latency_rel_error"].abs()
    thr = frame["throughput_rel_error"].abs()
    return {
        "rows": float(len(frame)),
        "latency_median_abs_error": float(lat.median()),
        "latency_p90_abs_error": float(lat.quantile(0.9)),
        "throughput_median_abs_error": float(thr.median()),
        "throughput_p90_abs_error": float(thr.quantile(0.9)),
    }


def _vllm_runs(table: str, constants: PerfConstants) -> tuple[pd.DataFrame, list[BatchRun]]:
    df = argonne_results(table)
    df = df[(df["framework"] == "vLLM") & df["gpu"].notna()].reset_index(drop=True)
    runs = [
        static_batch_run(StepTimeModel(gpu, model, args, constants), *sizes)
        for gpu, model, args, *sizes in _cases(df)
    ]
    return df, runs


def compare_ttft_with_argonne(constants: PerfConstants = FITTED) -> pd.DataFrame:
    """Fig 22: the latency of a batch of 16 x 1024-token prompts with one output token."""
    df, runs = _vllm_runs("fig22_ttft", constants)
    out = df[["gpu", "model"]].assign(
        measured_ttft_s=df["ttft_s"], predicted_ttft_s=[r.latency_s for r in runs]
    )
    out["rel_error"] = out["predicted_ttft_s"] / out["measured_ttft_s"] - 1
    return out


def compare_power_with_argonne(constants: PerfConstants = FITTED) -> pd.DataFrame:
    """Fig 16: mean power of GPU 0 over a run, vLLM rows (the TensorRT-LLM rows sum the
    whole node's GPUs, so they are left out)."""
    df, runs = _vllm_runs("fig16_power", constants)
    out = df[["gpu", "model", "batch_size"]].assign(
        measured_power_w=df["avg_power_w"],
        predicted_power_w=[r.energy_j / r.latency_s for r in runs],
    )
    out["rel_error"] = out["predicted_power_w"] / out["measured_power_w"] - 1
    return out
