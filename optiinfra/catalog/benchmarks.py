"""Public LLM inference benchmark tables: Argonne's LLM-Inference-Bench, normalised.

Argonne National Laboratory measured offline batch inference of 7B-72B models on NVIDIA
A100 / H100 / GH200, AMD MI250 / MI300X, Intel Max 1550, Habana Gaudi2 and SambaNova
SN40L with vLLM, TensorRT-LLM, llama.cpp, DeepSpeed-MII and SambaFlow (Chitty-Venkata et
al., "LLM-Inference-Bench", arXiv:2411.00136; tables copied verbatim from
``argonne-lcf/LLM-Inference-Bench``, see ``data/argonne/SOURCES.md``).

What the columns mean, as read from their scripts (``vLLM/H100/benchmark_throughput.py``,
``benchmark_power.py``, ``power_utils.py``, ``run-throughput-bench.sh``):

- every run is one static batch: ``batch_size`` prompts of ``input_tokens`` random token
  ids submitted at once, each generating exactly ``output_tokens`` (``ignore_eos=True``);
  the "Input Output Length" column is both lengths (``--input-len=N --output-len=N``).
- ``latency_s`` is the wall time of the whole ``llm.generate`` call (mean of the timed
  iterations); ``throughput_tok_s = batch_size x (input_tokens + output_tokens) /
  latency_s`` -- prompt and generated tokens both count. This holds to 1e-9 on every
  vLLM, TensorRT-LLM, DeepSpeed and SambaFlow row, not on llama.cpp rows (llama-bench
  reports its own rates).
- ``gpus`` ("Num of Hardware") is vLLM's ``--tensor-parallel-size`` for vLLM rows.
- vLLM ran with ``--dtype float16`` (weights and KV cache fp16) unless Fig 3 says otherwise.
- ``avg_power_w``: the table's ``avg_power`` is NVML ``nvmlDeviceGetPowerUsage`` in
  milliwatts, sampled every 0.25 s during the run; divided by 1000 here. vLLM runs read
  GPU 0 only; the TensorRT-LLM power script reads the *sum over all GPUs of the node*.
- ``ttft_s`` (Fig 22): the latency of the same batch with one output token; its
  ``end_latency`` is the 1024-in / 1024-out latency of the same batch (``paired_latency_s``).

Hardware names: "Nvidia A100 GPU" is the A100 SXM4 40 GB of ALCF Polaris (4 per node,
NVLink, 400 W; the vLLM A100 scripts are PBS jobs on Polaris' ``eagle``/``grand`` file
systems, and ALCF's Polaris machine overview lists 40 GiB HBM2 A100s); "Nvidia H100 GPU"
is the H100 SXM5 80 GB of Argonne's JLSE testbed (nvidia-smi in their llama.cpp/H100
README: "NVIDIA H100 80GB HBM3", 700 W cap). GH200, AMD, Intel, Habana and SambaNova
hardware has no catalog entry: ``gpu`` is None there.
"""

from __future__ import annotations

import io
import re
from functools import cache
from importlib import resources

import pandas as pd

from optiinfra.catalog._tables import CatalogError
from optiinfra.catalog.gpus import gpu_specs

_DIR = ("data", "argonne")

#: Argonne's hardware names -> catalog GPU names (only where the catalog has the part).
ARGONNE_GPUS = {"Nvidia A100 GPU": "A100 40GB SXM", "Nvidia H100 GPU": "H100 SXM"}

#: The normalised columns, in order.
COLUMNS = [
    "table",
    "hardware",
    "gpu",
    "gpus",
    "framework",
    "model",
    "input_tokens",
    "output_tokens",
    "batch_size",
    "latency_s",
    "throughput_tok_s",
    "weight_dtype",
    "kv_cache_dtype",
    "parallelism",
    "tensor_parallel",
    "pipeline_parallel",
    "expert_parallel",
    "ttft_s",
    "paired_latency_s",
    "avg_power_w",
]

_TABLES = {
    "all": "All_results.csv",
    "fig3_quant": "Fig_3__A100_H100_quant_all_results.csv",
    "fig5a_parallel": "Fig_5_a__TP_PP_Results.csv",
    "fig16_power": "Fig_16_a_b__power_results.csv",
    "fig22_ttft": "Fig_22__all_results_TTFT_ITL.csv",
}


def _read(filename: str) -> pd.DataFrame:
    ref = resources.files("optiinfra.catalog").joinpath(*_DIR, filename)
    try:
        text = ref.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CatalogError(f"benchmark table {filename} is missing from the package") from exc
    frame = pd.read_csv(io.StringIO(text), skip_blank_lines=True)
    frame.columns = [c.strip() for c in frame.columns]
    return frame.dropna(how="all")


def _base(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    out["table"] = table
    out["hardware"] = frame["Hardware"].str.strip()
    known = set(gpu_specs())
    for name in ARGONNE_GPUS.values():
        if name not in known:
            raise CatalogError(f"gpu_specs.csv has no row {name!r} for the Argonne tables")
    out["gpu"] = out["hardware"].map(ARGONNE_GPUS).astype(object)
    out["gpu"] = out["gpu"].where(out["gpu"].notna(), None)
    out["gpus"] = frame["Num of Hardware"].astype(int)
    out["framework"] = frame["Framework"].str.strip()
    out["model"] = frame["Model"].str.strip()
    out["batch_size"] = frame["Batch Size"].astype(int)
    return out


def _same_length(out: pd.DataFrame, frame: pd.DataFrame) -> None:
    out["input_tokens"] = frame["Input Output Length"].astype(int)
    out["output_tokens"] = out["input_tokens"]


def _vllm_defaults(out: pd.DataFrame) -> None:
    vllm = out["framework"] == "vLLM"
    out.loc[vllm, "weight_dtype"] = "fp16"
    out.loc[vllm, "kv_cache_dtype"] = "fp16"
    out.loc[vllm, "parallelism"] = "tensor"
    out.loc[vllm, "tensor_parallel"] = out.loc[vllm, "gpus"]
    out.loc[vllm, "pipeline_parallel"] = 1


_DTYPES = re.compile(r"Weight\s*=\s*(\w+)\s*,\s*KV Cache\s*=\s*(\w+)")


def _parallel(text: str, gpus: int) -> tuple[str, int, int, int]:
    """(kind, tp, pp, ep) from Fig 5a's free-text "Parallelism Type"."""
    t = text.lower()
    hybrid = []
    if t.startswith(("hybrid", "hybird")):  # sic: one cell says "Hybird"
        hybrid = re.findall(r"(tp|tensor|pp|pipeline|ep)\D*?(\d+)", t)
    if hybrid:
        sizes = {"tp": 1, "pp": 1, "ep": 1}
        for kind, n in hybrid:
            key = {"tensor": "tp", "pipeline": "pp"}.get(kind, kind)
            sizes[key] = int(n)
        kinds = "+".join(k for k in ("tp", "pp", "ep") if sizes[k] > 1)
        return f"hybrid {kinds}", sizes["tp"], sizes["pp"], sizes["ep"]
    if t in {"tp", "tensor parallelism"}:
        return "tensor", gpus, 1, 1
    if t in {"pp", "pipeline parallelism"}:
        return "pipeline", 1, gpus, 1
    if t == "ep":
        return "expert", 1, 1, gpus
    raise CatalogError(f"Fig_5_a: unknown parallelism type {text!r}")


@cache
def _results() -> pd.DataFrame:
    parts = []

    f = _read(_TABLES["all"])
    out = _base(f, "all")
    _same_length(out, f)
    out["latency_s"] = f["Latency"].astype(float)
    out["throughput_tok_s"] = f["Throughput"].astype(float)
    _vllm_defaults(out)
    parts.append(out)

    f = _read(_TABLES["fig3_quant"])
    out = _base(f, "fig3_quant")
    _same_length(out, f)
    out["latency_s"] = f["latency"].astype(float)
    out["throughput_tok_s"] = f["throughput"].astype(float)
    dtypes = f["kv_cache_dtype"].str.extract(_DTYPES)
    if dtypes.isna().any().any():
        raise CatalogError("Fig_3: a kv_cache_dtype cell is not 'Weight = X, KV Cache = Y'")
    out["weight_dtype"], out["kv_cache_dtype"] = dtypes[0], dtypes[1]
    out["parallelism"] = "tensor"
    out["tensor_parallel"], out["pipeline_parallel"] = out["gpus"], 1
    parts.append(out)

    f = _read(_TABLES["fig5a_parallel"])
    out = _base(f, "fig5a_parallel")
    _same_length(out, f)
    out["latency_s"] = f["Latency"].astype(float)
    out["throughput_tok_s"] = f["Throughput"].astype(float)
    parsed = [
        _parallel(str(t).strip(), g)
        for t, g in zip(f["Parallelism Type"], out["gpus"], strict=True)
    ]
    out["parallelism"] = [p[0] for p in parsed]
    out["tensor_parallel"] = [p[1] for p in parsed]
    out["pipeline_parallel"] = [p[2] for p in parsed]
    out["expert_parallel"] = [p[3] for p in parsed]
    parts.append(out)

    f = _read(_TABLES["fig16_power"])
    out = _base(f, "fig16_power")
    _same_length(out, f)
    out["latency_s"] = f["Latency"].astype(float)
    out["throughput_tok_s"] = f["Throughput"].astype(float)
    out["avg_power_w"] = f["avg_power"].astype(float) / 1000.0  # NVML milliwatts
    _vllm_defaults(out)
    parts.append(out)

    f = _read(_TABLES["fig22_ttft"])
    out = _base(f, "fig22_ttft")
    out["input_tokens"] = f["Input Length"].astype(int)
    out["output_tokens"] = f["Output Length"].astype(int)
    out["ttft_s"] = f["TTFT Latency"].astype(float)
    out["paired_latency_s"] = f["end_latency"].astype(float)
    _vllm_defaults(out)
    parts.append(out)

    frame = pd.concat(parts, ignore_index=True)
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    frame = frame[COLUMNS]
    for column in ("tensor_parallel", "pipeline_parallel", "expert_parallel"):
        frame[column] = frame[column].astype("Int64")
    for column in ("gpu", "weight_dtype", "kv_cache_dtype", "parallelism"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def argonne_results(table: str | None = None) -> pd.DataFrame:
    """Argonne LLM-Inference-Bench rows with normalised columns (:data:`COLUMNS`).

    ``table`` picks one source: ``all`` (All_results.csv, 4,772 rows), ``fig3_quant``
    (weight / KV dtypes), ``fig5a_parallel`` (TensorRT-LLM tensor / pipeline / expert
    parallelism), ``fig16_power`` or ``fig22_ttft``; None gives all of them, one row per
    source row (the figures' rows repeat some of All_results' runs). A copy: change it
    freely.

    Example::

        >>> df = argonne_results("all")
        >>> df[(df.gpu == "H100 SXM") & (df.framework == "vLLM")].shape[0] > 300
        True
    """
    frame = _results()
    if table is not None:
        if table not in _TABLES:
            raise CatalogError(f"unknown Argonne table {table!r}; known: {', '.join(_TABLES)}")
        frame = frame[frame["table"] == table]
    return frame.reset_index(drop=True).copy()
