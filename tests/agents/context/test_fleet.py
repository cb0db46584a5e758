"""The fleet context: deployments from inventory, targets, policies and orphan notes."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from agents.context import FleetContext
from agents.context.fleet import DEPLOYMENT_COLUMNS, deployments_from_inventory
from agents.context.stats import DEPLOYMENT_STATS_COLUMNS
from optiinfra.config import OptiInfraConfig
from optiinfra.config.schema import SLO, Policy, Tenant

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def instance(
    name: str,
    *,
    labels: dict[str, Any] | str | None = None,
    gpu: str = "L4",
    gpu_count: int = 1,
    market: str = "on-demand",
    price: float | None = 0.8,
    state: str = "running",
    region: str = "us-east-1",
    instance_type: str = "g6.xlarge",
    tenant: str = "default",
    provider: str = "aws-main",
) -> dict[str, Any]:
    """One inventory row; ``labels`` as the store keeps them (JSON text)."""
    text = labels if isinstance(labels, str) else json.dumps(labels or {})
    return {
        "tenant": tenant,
        "provider": provider,
        "instance": name,
        "region": region,
        "instance_type": instance_type,
        "gpu_model": gpu,
        "gpu_count": gpu_count,
        "market": market,
        "price_usd_per_hour": price,
        "state": state,
        "labels": text,
        "last_seen": pd.Timestamp(NOW),
    }


def metric_row(deployment: str, metric: str, mean: float, **keys: str) -> dict[str, Any]:
    return {
        "tenant": keys.get("tenant", "default"),
        "provider": keys.get("provider", "aws-main"),
        "deployment": deployment,
        "instance": f"{deployment}-0",
        "metric": metric,
        "quantile": "",
        "n": 12,
        "mean": mean,
        "p95": mean,
        "max": mean,
        "last": mean,
        "first_ts": pd.Timestamp(NOW) - pd.Timedelta(hours=1),
        "last_ts": pd.Timestamp(NOW),
    }


def by_name(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {r["deployment"]: r for r in frame.to_dict("records")}


CHAT = {
    "deployment": "chat",
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "engine": "vllm",
    "cloud": "aws",
    "stateless": "true",
    "engine_args": json.dumps({"max_num_seqs": 64, "enable_prefix_caching": False}),
}


@pytest.fixture
def inventory() -> pd.DataFrame:
    return pd.DataFrame(
        [
            instance("i-1", labels=CHAT, price=0.8),
            instance("i-3", labels=CHAT, price=0.8, state="stopped"),
            instance("i-2", labels=CHAT, market="spot", price=0.4),
            instance("i-9", labels={"model": "mistralai/Mistral-7B-v0.1"}, gpu="A10G", price=1.0),
            instance(
                "i-20", labels={"deployment": "batch", "stateless": "false"}, gpu="A10G", price=None
            ),
            instance(
                "i-21",
                labels={"deployment": "batch", "stateless": "false"},
                gpu="L40S",
                market="reserved",
                price=None,
            ),
            instance("i-22", labels={"deployment": "batch"}, gpu="A10G", price=None),
        ]
    )


# -- deployments from inventory ------------------------------------------------------------


def test_replicas_markets_and_prices_are_counted_per_deployment(inventory: pd.DataFrame) -> None:
    chat = by_name(deployments_from_inventory(inventory))["chat"]
    assert chat["replicas"] == 3
    assert chat["running"] == 2
    assert (chat["on_demand"], chat["spot"], chat["reserved"]) == (2, 1, 0)
    assert chat["usd_per_hour"] == pytest.approx(2.0)
    assert chat["price_per_replica"] == pytest.approx(0.8)  # median of 0.8, 0.8, 0.4
    assert chat["instances"] == ["i-1", "i-2", "i-3"]
    assert chat["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert chat["engine"] == "vllm"
    assert chat["cloud"] == "aws"
    assert (chat["gpu"], chat["gpu_count"]) == ("L4", 1)
    assert chat["mixed_hardware"] is False


def test_labels_are_parsed_stateless_and_engine_args(inventory: pd.DataFrame) -> None:
    found = by_name(deployments_from_inventory(inventory))
    assert found["chat"]["stateless"] is True
    assert found["batch"]["stateless"] is False
    assert found["i-9"]["stateless"] is None  # not labelled: unknown, never "stateless"
    assert found["chat"]["engine_args"] == {"max_num_seqs": 64, "enable_prefix_caching": False}
    assert found["batch"]["engine_args"] == {}


@pytest.mark.parametrize(
    ("label", "expected"),
    [("true", True), ("True", True), ("1", True), ("false", False), ("no", False), ("", None)],
)
def test_stateless_label_text(label: str, expected: bool | None) -> None:
    frame = deployments_from_inventory(
        pd.DataFrame([instance("i-1", labels={"deployment": "d", "stateless": label})])
    )
    # Detectors read rows through ``to_dict("records")`` and test ``is True``.
    assert frame.to_dict("records")[0]["stateless"] is expected


def test_engine_args_that_are_not_json_objects_give_no_args() -> None:
    rows = [
        instance("a", labels={"deployment": "a", "engine_args": "not json {"}),
        instance("b", labels={"deployment": "b", "engine_args": "[1, 2]"}),
    ]
    found = by_name(deployments_from_inventory(pd.DataFrame(rows)))
    assert found["a"]["engine_args"] == {}
    assert found["b"]["engine_args"] == {}


def test_unparseable_labels_make_the_instance_its_own_deployment() -> None:
    frame = deployments_from_inventory(pd.DataFrame([instance("i-5", labels="{broken")]))
    assert list(frame["deployment"]) == ["i-5"]


def test_instance_without_deployment_label_is_its_own_deployment(
    inventory: pd.DataFrame,
) -> None:
    solo = by_name(deployments_from_inventory(inventory))["i-9"]
    assert solo["replicas"] == 1
    assert solo["instances"] == ["i-9"]
    assert solo["gpu"] == "A10G"
    assert solo["model"] == "mistralai/Mistral-7B-v0.1"
    assert solo["usd_per_hour"] == pytest.approx(1.0)


def test_mixed_hardware_is_flagged_and_the_majority_gpu_named(inventory: pd.DataFrame) -> None:
    batch = by_name(deployments_from_inventory(inventory))["batch"]
    assert batch["mixed_hardware"] is True
    assert batch["gpu"] == "A10G"  # two of three instances
    assert (batch["on_demand"], batch["spot"], batch["reserved"]) == (2, 0, 1)


@pytest.mark.parametrize("written", ["on_demand", "OnDemand", "on-demand"])
def test_market_spellings_count_as_on_demand(written: str) -> None:
    rows = [
        instance("a", labels={"deployment": "d"}, market=written),
        instance("b", labels={"deployment": "d"}, market="spot"),
    ]
    d = deployments_from_inventory(pd.DataFrame(rows)).to_dict("records")[0]
    assert (d["on_demand"], d["spot"]) == (1, 1)


def test_unknown_prices_give_nan_not_zero(inventory: pd.DataFrame) -> None:
    batch = by_name(deployments_from_inventory(inventory))["batch"]
    assert math.isnan(batch["usd_per_hour"])
    assert math.isnan(batch["price_per_replica"])


def test_same_deployment_name_in_two_tenants_is_two_deployments() -> None:
    rows = [
        instance("a", labels={"deployment": "chat"}, tenant="acme"),
        instance("b", labels={"deployment": "chat"}, tenant="globex"),
        instance("c", labels={"deployment": "chat"}, tenant="globex"),
    ]
    frame = deployments_from_inventory(pd.DataFrame(rows))
    assert sorted(zip(frame["tenant"], frame["replicas"], strict=True)) == [
        ("acme", 1),
        ("globex", 2),
    ]


def test_empty_inventory_gives_the_documented_columns() -> None:
    frame = deployments_from_inventory(pd.DataFrame())
    assert frame.empty
    assert list(frame.columns) == DEPLOYMENT_COLUMNS


# -- the context: stats, orphans, lookups --------------------------------------------------


def context(
    inventory: pd.DataFrame,
    recent: list[dict[str, Any]] | None = None,
    config: OptiInfraConfig | None = None,
) -> FleetContext:
    return FleetContext.from_frames(
        now=NOW,
        window_seconds=3600,
        inventory=inventory,
        recent=pd.DataFrame(recent or []),
        config=config,
    )


def test_metrics_without_inventory_are_noted_as_vanished(inventory: pd.DataFrame) -> None:
    recent = [
        metric_row("chat", "request_success_per_second", 1.0),
        metric_row("ghost", "request_success_per_second", 2.0),
    ]
    ctx = context(inventory, recent)
    assert len(ctx.notes) == 1
    assert "default/aws-main/ghost" in ctx.notes[0]
    assert "no inventory" in ctx.notes[0]
    # The orphan is not a deployment the detectors see.
    assert "ghost" not in {d["deployment"] for d, _ in ctx.deployment_rows()}


def test_no_orphan_note_when_every_deployment_has_inventory(inventory: pd.DataFrame) -> None:
    ctx = context(inventory, [metric_row("chat", "request_success_per_second", 1.0)])
    assert ctx.notes == []


def test_deployment_rows_pair_inventory_with_stats_or_none(inventory: pd.DataFrame) -> None:
    ctx = context(inventory, [metric_row("chat", "request_success_per_second", 1.5)])
    rows = list(ctx.deployment_rows())
    assert [d["deployment"] for d, _ in rows] == ["batch", "chat", "i-9"]
    stats = {d["deployment"]: s for d, s in rows}
    assert stats["chat"] is not None
    assert stats["chat"]["request_rate"] == pytest.approx(1.5)
    assert stats["batch"] is None and stats["i-9"] is None


def test_empty_recent_frame_gives_empty_stats_and_no_notes(inventory: pd.DataFrame) -> None:
    ctx = context(inventory)
    assert ctx.stats.empty
    assert list(ctx.stats.columns) == DEPLOYMENT_STATS_COLUMNS
    assert ctx.notes == []
    assert ctx.slos == [] and ctx.policies == []


def test_cloud_comes_from_the_label_else_the_provider_kind(inventory: pd.DataFrame) -> None:
    ctx = context(inventory)
    ctx.provider_kinds = {"aws-main": "gcp"}
    found = by_name(ctx.deployments)
    assert ctx.cloud_of(found["chat"]) == "aws"  # labelled
    assert ctx.cloud_of(found["i-9"]) == "gcp"  # from the provider's kind


def slo_config() -> OptiInfraConfig:
    return OptiInfraConfig(
        tenants=[Tenant(name="default"), Tenant(name="acme")],
        slos=[
            # The specific entry listed first: order in the file must not matter.
            SLO(tenant="default", deployment="chat", ttft_p95_seconds=0.5),
            SLO(tenant="default", deployment="*", ttft_p95_seconds=2.0, itl_p95_seconds=0.1),
            SLO(tenant="acme", deployment="chat", e2e_p95_seconds=30.0),
        ],
        policies=[Policy(tenant="acme", max_quality_drop=0.02, forbidden_changes=["quantization"])],
    )


def test_deployment_slo_overrides_the_tenant_wildcard(inventory: pd.DataFrame) -> None:
    ctx = context(inventory, config=slo_config())
    chat = ctx.targets("default", "chat")
    assert chat.ttft_p95_s == 0.5  # its own entry
    assert chat.itl_p95_s == 0.1  # inherited from '*', which the entry does not set
    assert chat.e2e_p95_s is None
    assert set(chat.sources) == {"default/chat", "default/*"}
    other = ctx.targets("default", "batch")
    assert (other.ttft_p95_s, other.itl_p95_s) == (2.0, 0.1)
    assert other.sources == ("default/*",)


def test_targets_never_leak_across_tenants(inventory: pd.DataFrame) -> None:
    ctx = context(inventory, config=slo_config())
    acme = ctx.targets("acme", "chat")
    assert (acme.ttft_p95_s, acme.itl_p95_s, acme.e2e_p95_s) == (None, None, 30.0)
    nobody = ctx.targets("initech", "chat")
    assert nobody.any is False
    assert nobody.sources == ()


def test_policy_defaults_when_none_is_configured(inventory: pd.DataFrame) -> None:
    ctx = context(inventory, config=slo_config())
    default = ctx.policy("default")
    assert default.tenant == "default"
    assert default.max_quality_drop == pytest.approx(0.10)
    assert default.forbidden_changes == []
    assert default.max_rollout_percent == 100
    acme = ctx.policy("acme")
    assert acme.max_quality_drop == pytest.approx(0.02)
    assert acme.forbidden_changes == ["quantization"]
