"""Right-sizing: the cheapest hardware that serves the observed load within the targets."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest

from agents.common.capacity import DEFAULT_TARGETS
from agents.common.proposals import HOURS_PER_MONTH, Proposal
from agents.cost.detectors.rightsize import (
    ReplicaCapacityEstimator,
    candidate_quotes,
    detect_right_size,
)
from agents.cost.thresholds import CostThresholds
from optiinfra.capacity import CapacityModel, ServingConfig
from optiinfra.catalog.prices import price_table, quote
from optiinfra.config import OptiInfraConfig
from optiinfra.config.schema import SLO
from tests.agents.fleets import NOW, Fleet, context, default_like

THRESHOLDS = CostThresholds()
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"


@pytest.fixture(scope="module")
def model() -> CapacityModel:
    return CapacityModel.default()


def run(
    fleets: list[Fleet], model: CapacityModel, config: OptiInfraConfig | None = None
) -> tuple[list[Proposal], list[str]]:
    ctx = context(fleets, config=config)
    return detect_right_size(ctx, THRESHOLDS, ReplicaCapacityEstimator(model, ctx))


def code_3b() -> Fleet:
    return next(f for f in default_like() if f.name == "code-3b")


def test_a_3b_model_on_an_a100_at_a_trickle_moves_to_a_cheaper_gpu(
    model: CapacityModel,
) -> None:
    proposals, notes = run(default_like(), model)
    assert notes == []
    [p] = [p for p in proposals if p.target == "code-3b"]
    assert (p.kind, p.detector) == ("right_size", "right_size")
    assert p.change["gpu"] != "A100 80GB SXM"
    assert p.change["market"] == "on-demand"
    offer = quote(p.change["gpu"], p.change["gpu_count"], "gcp", "us-central1", "on-demand")
    assert p.change["instance_type"] == offer.instance_type
    # The cheapest serving offering of gcp us-central1 serves 0.1 requests/s on one replica.
    cheapest = min(
        candidate_quotes("gcp", "us-central1", "on-demand"), key=lambda q: q.usd_per_hour
    )
    assert offer.instance_type == cheapest.instance_type
    assert p.change["replicas"] == 1
    saving_h = 2.94582 - offer.usd_per_hour * p.change["replicas"]
    assert saving_h > 0
    assert p.expected_deltas["cost_usd_per_hour"].value == pytest.approx(-saving_h)
    assert p.expected_deltas["cost_usd_per_month"].value == pytest.approx(
        -saving_h * HOURS_PER_MONTH
    )
    # Predicted latencies on the new GPU, within the assumed default targets.
    assert DEFAULT_TARGETS.ttft_p95_s is not None and DEFAULT_TARGETS.itl_p95_s is not None
    assert p.evidence["predicted_ttft_p95_s"]["value"] <= DEFAULT_TARGETS.ttft_p95_s
    assert p.evidence["predicted_itl_p95_s"]["value"] <= DEFAULT_TARGETS.itl_p95_s
    assert p.evidence["targets"]["source"] == "assumed default"
    # Latency deltas are predicted minus observed (0.15 s TTFT, 10 ms ITL).
    ttft = p.expected_deltas["ttft_p95_s"]
    assert ttft.value == pytest.approx(p.evidence["predicted_ttft_p95_s"]["value"] - 0.15)
    itl = p.expected_deltas["itl_p95_s"]
    assert itl.value == pytest.approx(p.evidence["predicted_itl_p95_s"]["value"] - 0.01)


def test_the_current_hardware_serves_at_least_what_it_is_measured_serving(
    model: CapacityModel,
) -> None:
    proposals, _ = run([code_3b()], model)
    [p] = proposals
    assert p.evidence["replica_capacity_rps"]["current"] >= 0.1


def test_a_configured_slo_bounds_the_choice(model: CapacityModel) -> None:
    config = OptiInfraConfig(slos=[SLO(deployment="code-3b", ttft_p95_seconds=1.0)])
    [p], _ = run([code_3b()], model, config)
    assert p.evidence["targets"]["source"].startswith("default/code-3b")
    assert p.evidence["targets"]["ttft_p95_s"] == 1.0
    # ITL is not configured: the default fills it in, and the evidence says so.
    assert p.evidence["targets"]["itl_p95_s"] == DEFAULT_TARGETS.itl_p95_s
    assert "assumed default" in p.evidence["targets"]["source"]
    assert p.evidence["predicted_ttft_p95_s"]["value"] <= 1.0


def test_already_on_the_cheapest_serving_gpu_gives_nothing(model: CapacityModel) -> None:
    l4 = quote("L4", 1, "gcp", "us-central1", "on-demand")
    fleet = replace(code_3b(), gpu="L4", price=l4.usd_per_hour, instance_type=l4.instance_type)
    assert run([fleet], model) == ([], [])


def _offer_gpu(key: str) -> tuple[str, int]:
    """(gpu, gpu_count) of an option key ``cloud/region/instance_type/market``."""
    cloud, region, instance_type, _ = key.split("/")
    table = price_table()
    row = table[
        (table["cloud"] == cloud)
        & (table["region"] == region)
        & (table["instance_type"] == instance_type)
    ].iloc[0]
    return str(row["gpu"]), int(row["gpu_count"])


def _70b(**changes: Any) -> Fleet:
    """Llama 70B on 8 x H100 (tensor parallel 8) at a trickle, with consistent figures."""
    base = Fleet(
        "big",
        model=LLAMA_70B,
        gpu="H100 SXM",
        gpu_count=8,
        price=55.04,
        instance_type="p5.48xlarge",
        rate=0.05,
        running=0.16,
        ttft_p95=0.15,
        itl_p95=0.015,
        engine_args={"tensor_parallel_size": 8},
    )
    return replace(base, **changes)


def test_a_70b_model_is_never_moved_to_a_gpu_it_does_not_fit(model: CapacityModel) -> None:
    proposals, _ = run([_70b()], model)
    assert proposals, "AWS has cheaper 4- and 8-GPU offerings than 8 x H100 that hold 70B"
    for p in proposals:
        gpu, count = p.change["gpu"], p.change["gpu_count"]
        args = p.change.get("engine_args", {})
        assert args.get("tensor_parallel_size") == count
        # The proposed configuration, with any context limit it sets, holds the model.
        cfg = ServingConfig(
            gpu=gpu,
            model=LLAMA_70B,
            gpu_count=count,
            tensor_parallel=count,
            max_model_len=args.get("max_model_len"),
        )
        assert model.memory(cfg).fits, p.change
        assert p.evidence["max_model_len_after"] == args.get("max_model_len")
        # Every option the allocator weighed holds the weights at the shortest context
        # limit the detector would set (8,192); 1 x L4/L40S/A10G and 4 x L4/A10G do not
        # and must not have been weighed.
        for key in p.evidence["replica_capacity_rps"]:
            if key == "current":
                continue
            gpu, count = _offer_gpu(key)
            weighed = ServingConfig(
                gpu=gpu, model=LLAMA_70B, gpu_count=count, tensor_parallel=count, max_model_len=8192
            )
            assert model.memory(weighed).fits, key
            assert count >= 4, key


def test_a_70b_model_with_nothing_cheaper_that_holds_it_stays(model: CapacityModel) -> None:
    # GCP us-central1 offers 1 x A100 and 1 or 4 x L4 below 8 x H100: none holds 70B.
    h100 = quote("H100", 8, "gcp", "us-central1", "on-demand")
    fleet = _70b(
        cloud="gcp",
        region="us-central1",
        price=h100.usd_per_hour,
        instance_type=h100.instance_type,
    )
    assert run([fleet], model) == ([], [])


def test_no_token_counts_is_noted(model: CapacityModel) -> None:
    fleet = replace(code_3b(), prompt_tokens=0.0, output_tokens=0.0)
    proposals, notes = run([fleet], model)
    assert proposals == []
    [note] = notes
    assert note.startswith("sandbox/code-3b: right-sizing skipped")
    assert "token counts" in note


def test_idle_deployments_are_left_to_the_idle_detector(model: CapacityModel) -> None:
    legacy = next(f for f in default_like() if f.name == "legacy-7b")
    assert run([legacy], model) == ([], [])


def test_unknown_price_or_no_metrics_gives_nothing(model: CapacityModel) -> None:
    assert run([replace(code_3b(), price=None)], model) == ([], [])
    assert run([replace(code_3b(), metrics=False)], model) == ([], [])


def test_an_e2e_only_slo_still_sizes_against_a_latency_bound(model: CapacityModel) -> None:
    config = OptiInfraConfig(slos=[SLO(deployment="code-3b", e2e_p95_seconds=60.0)])
    [p], _ = run([code_3b()], model, config)
    targets = p.evidence["targets"]
    assert targets["ttft_p95_s"] is not None or targets["itl_p95_s"] is not None


def _hourly(peak_rps: float, peak_hours_ago: int) -> pd.DataFrame:
    """Two weeks of chat-8b's hourly load at 0.9 requests/s, one hour at ``peak_rps``."""
    hours = range(1, 14 * 24)
    return pd.DataFrame(
        {
            "tenant": "default",
            "provider": "sandbox",
            "deployment": "chat-8b",
            "hour": [NOW - timedelta(hours=h) for h in hours],
            "request_rate": [peak_rps if h == peak_hours_ago else 0.9 for h in hours],
            "instances": 3,
        }
    )


def test_replicas_are_sized_for_the_busiest_hour_of_the_last_week(
    model: CapacityModel,
) -> None:
    fleets = [f for f in default_like() if f.name == "chat-8b"]
    quiet = context(fleets, hourly=_hourly(0.9, 30))
    [now_only] = detect_right_size(quiet, THRESHOLDS, ReplicaCapacityEstimator(model, quiet))[0]
    assert now_only.change["replicas"] == 2  # 0.9 requests/s fit on two L4s
    assert now_only.evidence["sized_for"] == "recent window"
    # An afternoon at 3.3x the load, 30 hours ago: two replicas would not serve it.
    busy = context(fleets, hourly=_hourly(3.0, 30))
    proposals, _ = detect_right_size(busy, THRESHOLDS, ReplicaCapacityEstimator(model, busy))
    assert all(p.change["replicas"] >= 3 for p in proposals)
    for p in proposals:
        assert p.evidence["sized_for_rps"] == pytest.approx(3.0)
        assert p.evidence["request_rate_rps"] == pytest.approx(0.9)
    # The same peak ten days ago is outside the week looked at.
    old = context(fleets, hourly=_hourly(3.0, 240))
    [stale] = detect_right_size(old, THRESHOLDS, ReplicaCapacityEstimator(model, old))[0]
    assert stale.change["replicas"] == 2
