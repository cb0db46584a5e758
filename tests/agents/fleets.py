"""Constructed fleets for agent tests: inventory and window statistics as frames.

``deployment(...)`` describes one deployment's replicas and their serving figures;
``context(...)`` turns a list of them into a :class:`FleetContext` exactly as
``load_context`` would build it from the stores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from agents.common.proposals import Delta, Proposal, Risk
from agents.context import FleetContext
from optiinfra.config import OptiInfraConfig

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@dataclass
class Fleet:
    name: str
    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    gpu: str = "L4"
    gpu_count: int = 1
    replicas: int = 1
    cloud: str = "aws"
    region: str = "us-east-1"
    market: str = "on-demand"
    price: float | None = 0.8048
    stateless: bool = False
    engine_args: dict[str, Any] = field(default_factory=dict)
    instance_type: str = "g6.xlarge"
    #: Per-deployment metrics (rates summed over replicas; gauges per replica).
    rate: float | None = 1.0
    prompt_tokens: float = 1000.0
    output_tokens: float = 200.0
    running: float = 4.0
    waiting: float = 0.0
    kv_usage: float = 0.3
    preemptions: float = 0.0
    ttft_p95: float | None = 0.3
    itl_p95: float | None = 0.04
    gpu_util: float = 0.5
    samples: int = 12
    span: timedelta = timedelta(hours=1)
    metrics: bool = True


def _series(
    fleet: Fleet,
    instance: str,
    metric: str,
    mean: float,
    *,
    p95: float | None = None,
    quantile: str = "",
) -> dict[str, Any]:
    return {
        "tenant": "default",
        "provider": "sandbox",
        "deployment": fleet.name,
        "instance": instance,
        "metric": metric,
        "quantile": quantile,
        "n": fleet.samples,
        "mean": mean,
        "p95": mean if p95 is None else p95,
        "max": mean if p95 is None else p95,
        "last": mean,
        "first_ts": pd.Timestamp(NOW - fleet.span),
        "last_ts": pd.Timestamp(NOW),
    }


def recent_rows(fleet: Fleet) -> list[dict[str, Any]]:
    if not fleet.metrics:
        return []
    rows = []
    for k in range(fleet.replicas):
        inst = f"{fleet.name}-{k}"
        share = 1 / fleet.replicas
        if fleet.rate is not None:
            rows += [
                _series(fleet, inst, "request_success_per_second", fleet.rate * share),
                _series(
                    fleet,
                    inst,
                    "prompt_tokens_per_second",
                    fleet.rate * share * fleet.prompt_tokens,
                ),
                _series(
                    fleet,
                    inst,
                    "generation_tokens_per_second",
                    fleet.rate * share * fleet.output_tokens,
                ),
            ]
        rows += [
            _series(fleet, inst, "requests_running", fleet.running, p95=fleet.running * 1.5),
            _series(fleet, inst, "requests_waiting", fleet.waiting, p95=fleet.waiting * 1.5),
            _series(
                fleet,
                inst,
                "kv_cache_usage_ratio",
                fleet.kv_usage,
                p95=min(1.0, fleet.kv_usage * 1.2),
            ),
            _series(fleet, inst, "preemptions_per_second", fleet.preemptions * share),
            _series(fleet, inst, "gpu_utilization_ratio", fleet.gpu_util),
            _series(fleet, inst, "gpu_memory_used_bytes", 20e9),
        ]
        if fleet.ttft_p95 is not None:
            rows.append(_series(fleet, inst, "ttft_seconds", fleet.ttft_p95, quantile="0.95"))
        if fleet.itl_p95 is not None:
            rows.append(_series(fleet, inst, "itl_seconds", fleet.itl_p95, quantile="0.95"))
    return rows


def inventory_rows(fleet: Fleet) -> list[dict[str, Any]]:
    labels = {
        "deployment": fleet.name,
        "model": fleet.model,
        "engine": "vllm",
        "cloud": fleet.cloud,
        "stateless": "true" if fleet.stateless else "false",
        "engine_args": json.dumps(fleet.engine_args),
    }
    return [
        {
            "tenant": "default",
            "provider": "sandbox",
            "instance": f"{fleet.name}-{k}",
            "region": fleet.region,
            "instance_type": fleet.instance_type,
            "gpu_model": fleet.gpu,
            "gpu_count": fleet.gpu_count,
            "market": fleet.market,
            "price_usd_per_hour": fleet.price,
            "state": "running",
            "labels": json.dumps(labels),
            "last_seen": pd.Timestamp(NOW),
        }
        for k in range(fleet.replicas)
    ]


def context(
    fleets: list[Fleet],
    *,
    config: OptiInfraConfig | None = None,
    fleet_hours: pd.DataFrame | None = None,
    quality: pd.DataFrame | None = None,
    hourly: pd.DataFrame | None = None,
) -> FleetContext:
    recent = pd.DataFrame([r for f in fleets for r in recent_rows(f)])
    inventory = pd.DataFrame([r for f in fleets for r in inventory_rows(f)])
    return FleetContext.from_frames(
        now=NOW,
        window_seconds=3600,
        inventory=inventory,
        recent=recent,
        fleet_hours=fleet_hours,
        quality=quality,
        hourly=hourly,
        config=config or OptiInfraConfig(),
    )


def default_like() -> list[Fleet]:
    """The sandbox default fleet's four planted problems, as figures."""
    return [
        Fleet(
            "chat-8b",
            replicas=3,
            stateless=True,
            rate=0.9,
            prompt_tokens=1000,
            output_tokens=250,
            running=3,
            engine_args={
                "max_num_seqs": 64,
                "max_num_batched_tokens": 4096,
                "max_model_len": 16384,
            },
        ),
        Fleet(
            "code-3b",
            model="meta-llama/Llama-3.2-3B",
            gpu="A100 80GB SXM",
            cloud="gcp",
            region="us-central1",
            price=2.94582,
            instance_type="a2-ultragpu-1g",
            rate=0.1,
            prompt_tokens=2000,
            output_tokens=30,
            running=0.3,
            ttft_p95=0.15,
            itl_p95=0.01,
        ),
        Fleet(
            "rag-8b",
            gpu="A10G",
            price=1.006,
            instance_type="g5.xlarge",
            rate=0.2,
            prompt_tokens=9000,
            output_tokens=300,
            running=8,
            waiting=3,
            kv_usage=0.97,
            preemptions=0.2,
            ttft_p95=6.0,
            itl_p95=0.09,
            engine_args={"max_num_seqs": 128, "max_model_len": 16384},
        ),
        Fleet(
            "legacy-7b",
            model="mistralai/Mistral-7B-v0.1",
            gpu="A10G",
            price=1.006,
            instance_type="g5.xlarge",
            stateless=True,
            rate=0.0,
            running=0.0,
            ttft_p95=None,
            itl_p95=None,
        ),
    ]


def handmade_proposals() -> list[Proposal]:
    """A forbidden reservation (discarded) and a spot move of the idle deployment
    (superseded by its shutdown)."""
    return [
        Proposal(
            agent="cost",
            kind="reserved_capacity",
            detector="reserved",
            provider="sandbox",
            target="chat-8b",
            title="Reserve 1 L4 for chat-8b for a year",
            change={"commitment": "1y", "gpus": 1},
            expected_deltas={"cost_usd_per_month": Delta(value=-120.0, unit="USD/month")},
            confidence=0.7,
            risk=Risk.LOW,
        ),
        Proposal(
            agent="cost",
            kind="spot_migration",
            detector="spot",
            provider="sandbox",
            target="legacy-7b",
            title="Move legacy-7b to spot",
            change={"market": "spot", "replicas_to_spot": 1, "keep_on_demand": 0},
            expected_deltas={"cost_usd_per_month": Delta(value=-300.0, unit="USD/month")},
            confidence=0.6,
        ),
    ]
