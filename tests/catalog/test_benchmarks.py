"""Argonne LLM-Inference-Bench tables: row counts, normalised columns, definitions."""

from __future__ import annotations

import pytest

from optiinfra.catalog._tables import CatalogError
from optiinfra.catalog.benchmarks import ARGONNE_GPUS, COLUMNS, argonne_results


def test_each_table_loads_every_row_with_the_normalised_columns() -> None:
    df = argonne_results()
    assert list(df.columns) == COLUMNS
    assert df.groupby("table").size().to_dict() == {
        "all": 4772,
        "fig3_quant": 116,
        "fig5a_parallel": 371,
        "fig16_power": 48,
        "fig22_ttft": 30,
    }
    assert len(argonne_results("fig3_quant")) == 116
    with pytest.raises(CatalogError, match="fig22_ttft"):
        argonne_results("fig99")


def test_gpu_names_map_onto_the_catalog_or_none() -> None:
    df = argonne_results("all")
    assert set(df["gpu"].dropna()) == {"A100 40GB SXM", "H100 SXM"}
    assert (df["hardware"].map(ARGONNE_GPUS).fillna("none") == df["gpu"].fillna("none")).all()
    others = df[df["gpu"].isna()]["hardware"].unique()
    assert "Nvidia GH200 GPU" in others and "SambaNova SN40L" in others
    assert df[df["hardware"] == "Nvidia GH200 GPU"]["gpu"].isna().all()


def test_throughput_is_batch_times_input_plus_output_over_latency() -> None:
    df = argonne_results()
    rows = df[df["latency_s"].notna() & (df["framework"] != "llama.cpp")]
    tokens = rows["batch_size"] * (rows["input_tokens"] + rows["output_tokens"])
    ratio = rows["throughput_tok_s"] * rows["latency_s"] / tokens
    assert ratio.between(1 - 1e-9, 1 + 1e-9).all()
    # a few rows by hand: H100 vLLM Llama-3-8B, 128 in / 128 out, batch 1
    first = df[(df["table"] == "fig3_quant")].iloc[0]
    assert (first.gpu, first.input_tokens, first.output_tokens, first.batch_size) == (
        "H100 SXM",
        128,
        128,
        1,
    )
    assert first.throughput_tok_s == pytest.approx(256 / first.latency_s)
    # counting only generated tokens would give half: not Argonne's definition
    assert first.throughput_tok_s != pytest.approx(128 / first.latency_s, rel=0.1)


def test_fig3_dtypes_fig5a_parallelism_and_vllm_defaults() -> None:
    q = argonne_results("fig3_quant")
    pairs = set(zip(q["weight_dtype"], q["kv_cache_dtype"], strict=True))
    assert {("fp16", "fp16"), ("fp16", "fp8"), ("fp8", "fp8"), ("int8", "int8")} <= pairs
    p = argonne_results("fig5a_parallel")
    assert set(p["parallelism"]) == {"tensor", "pipeline", "expert", "hybrid tp+pp", "hybrid tp+ep"}
    pipe = p[(p["parallelism"] == "pipeline") & (p["gpus"] == 4)]
    assert (pipe["pipeline_parallel"] == 4).all() and (pipe["tensor_parallel"] == 1).all()
    hybrid = p[p["parallelism"] == "hybrid tp+pp"]
    assert ((hybrid["tensor_parallel"] == 2) & (hybrid["pipeline_parallel"] == 2)).all()
    a = argonne_results("all")
    vllm = a[a["framework"] == "vLLM"]
    assert (vllm["tensor_parallel"] == vllm["gpus"]).all()
    assert (vllm["weight_dtype"] == "fp16").all()
    assert a[a["framework"] == "llama.cpp"]["weight_dtype"].isna().all()


def test_power_is_in_watts_and_ttft_pairs_with_the_end_to_end_run() -> None:
    power = argonne_results("fig16_power")
    assert power["avg_power_w"].between(150, 700).all()  # NVML milliwatts / 1000
    first = power.iloc[0]
    assert (first.gpu, first.batch_size) == ("A100 40GB SXM", 1)
    assert first.avg_power_w == pytest.approx(222.122, abs=0.01)
    ttft = argonne_results("fig22_ttft")
    assert (ttft["output_tokens"] == 1).all() and (ttft["input_tokens"] == 1024).all()
    assert ttft["latency_s"].isna().all()
    # end_latency is the 1024-in / 1024-out latency of the same batch in All_results
    a = argonne_results("all")
    row = ttft[(ttft["gpu"] == "A100 40GB SXM") & (ttft["framework"] == "vLLM")].iloc[0]
    same = a[
        (a["gpu"] == row.gpu)
        & (a["framework"] == "vLLM")
        & (a["model"] == row.model)
        & (a["input_tokens"] == 1024)
        & (a["batch_size"] == 16)
        & (a["gpus"] == 1)
    ]
    assert same["latency_s"].iloc[0] == pytest.approx(row.paired_latency_s)
    assert row.ttft_s < row.paired_latency_s / 10
