"""The ``sandbox`` provider against a real sandbox fleet (in a thread), through the real
collection flow and stores: inventory rows match the control API, every server's engine
and GPU samples carry its name and deployment, counters become rates across two
collections, an interrupted spot server is skipped, and a bad ``control_url`` is named.

The KV-pressured deployment runs an 8B model on an A10G with a deliberately small KV cache
(``gpu_memory_utilization`` 0.78, a 2,048-token context: ~5,500 cached tokens) under 16
short requests per second with 600-token answers, so preemptions start within ~3 s of
load (measured on the sandbox's own ground truth) instead of the ~25 s the e2e test's
long-prompt load needs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from flows.collect import collect_flow
from optiinfra.config import ProviderConfig
from optiinfra.errors import ConfigError
from optiinfra.runtime import load_runtime
from optiinfra.sandbox.spec import DeploymentSpec, FleetSpec, SandboxSettings
from optiinfra.store.timeseries import open_timeseries
from providers import CollectionContext
from providers.sandbox import SandboxProvider, SandboxUnavailable
from tests.e2e.sandbox_thread import SandboxThread, sandbox_thread

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
LOAD_SECONDS = 4.0  # between the two collections


def _deployment(name: str, **fields: Any) -> DeploymentSpec:
    return DeploymentSpec.model_validate({"name": name, "model": MODEL, **fields})


def _loaded_fleet() -> FleetSpec:
    pressure = _deployment(
        "pressure", gpu="A10G",
        engine_args={"max_model_len": 2048, "max_num_seqs": 128, "gpu_memory_utilization": 0.78},
        load={"kind": "poisson", "rps": 16.0, "prompt_tokens": 200, "output_tokens": 600},
    )  # fmt: skip
    light = _deployment(
        "light", gpu="L4", market="spot", replicas=2,
        engine_args={"max_model_len": 4096, "max_num_seqs": 32},
        load={"kind": "poisson", "rps": 1.0, "prompt_tokens": 100, "output_tokens": 16},
    )  # fmt: skip
    return FleetSpec(sandbox=SandboxSettings(seed=5, noise=0.05), deployments=[pressure, light])


def _idle_fleet() -> FleetSpec:
    spot = _deployment("spot", gpu="L4", market="spot", replicas=2,
                       engine_args={"max_model_len": 4096})  # fmt: skip
    steady = _deployment("steady", gpu="L4", engine_args={"max_model_len": 4096})
    return FleetSpec(sandbox=SandboxSettings(seed=1), deployments=[spot, steady])


def _control(sandbox: SandboxThread) -> str:
    assert sandbox.fleet is not None and sandbox.fleet.control is not None
    return f"http://127.0.0.1:{sandbox.fleet.control.port}"


def _config(tmp_path: Path, control_url: str, *, settle: float = 1.0) -> str:
    path = tmp_path / "providers.yaml"
    path.write_text(
        "version: 1\nproviders:\n"
        "  - name: sb\n    kind: sandbox\n    interval: 30s\n    retries: 0\n"
        f"    options: {{control_url: '{control_url}', scrape_settle_seconds: {settle}}}\n"
    )
    return str(path)


def _stored(table: str) -> pd.DataFrame:
    store = open_timeseries(load_runtime(None).metrics_url)
    try:
        frame = store.query_df(f"SELECT * FROM {table} FINAL WHERE provider = 'sb'")
    finally:
        store.close()
    if "labels" in frame.columns:
        frame["labels"] = [json.loads(text or "{}") for text in frame["labels"]]
    return frame


def _latest(frame: pd.DataFrame, instance: str, metric: str) -> float:
    rows = frame[(frame["instance"] == instance) & (frame["metric"] == metric)]
    assert len(rows), f"no {metric} for {instance}"
    return float(rows.sort_values("ts")["value"].iloc[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.prefect
def test_two_collections_store_inventory_costs_and_canonical_samples(
    prefect_harness: None, tmp_path: Path
) -> None:
    with sandbox_thread(_loaded_fleet()) as sandbox:
        control = _control(sandbox)
        config = _config(tmp_path, control)
        first = collect_flow(config_path=config, return_state=True)  # leaves the cursors
        time.sleep(LOAD_SECONDS)
        second = collect_flow(config_path=config, return_state=True)
        inventory = httpx.get(f"{control}/sandbox/inventory").json()["instances"]
        configs = {row["instance_id"]: httpx.get(f"{row['url']}/admin/config").json()
                   for row in inventory}  # fmt: skip
        assert sandbox.fleet is not None
        truth = sandbox.call(lambda: {
            name: servers[0].engine.truth.summary(servers[0].now(), 60)["preemptions"]
            for name, servers in sandbox.fleet.servers.items()
        })  # fmt: skip

    assert first.is_completed() and second.is_completed(), (first, second)
    result = second.result().results[0]
    assert (result.status, result.kind) == ("ok", "sandbox"), result
    assert result.instances == 3 and result.costs == 3 and result.samples > 0
    names = {row["instance_id"]: row["deployment"] for row in inventory}
    assert names == {"pressure-0": "pressure", "light-0": "light", "light-1": "light"}

    # inventory: one row per server per collection, matching the control API
    instances = _stored("instances")
    assert len(instances) == 6
    latest = instances.sort_values("ts").groupby("instance").tail(1).set_index("instance")
    for row in inventory:
        got = latest.loc[row["instance_id"]]
        assert got["gpu_model"] == row["gpu"] and got["gpu_count"] == row["gpu_count"]
        assert got["market"] == row["market"].replace("-", "_")
        assert got["price_usd_per_hour"] == pytest.approx(row["price_usd_per_hour"])
        assert (got["state"], got["instance_type"], got["region"]) == (
            "running", row["instance_type"], row["region"])  # fmt: skip
        labels = got["labels"]
        assert labels["deployment"] == row["deployment"] and labels["model"] == MODEL
        assert (labels["engine"], labels["cloud"], labels["sandbox"]) == ("vllm", "aws", "true")
        assert labels["stateless"] == "true"
        server = configs[row["instance_id"]]
        assert labels["config_id"] == server["config_id"]
        assert json.loads(labels["engine_args"]) == server["spec"]["engine_args"]
    assert json.loads(latest.loc["pressure-0", "labels"]["engine_args"])["max_num_seqs"] == 128
    assert latest.loc["light-1", "market"] == "spot"

    # samples: every server, each with its deployment; GPU samples keyed by the server
    samples = _stored("samples")
    assert set(samples["instance"]) == set(names)
    assert (samples["deployment"] == samples["instance"].map(names)).all()
    gpu = samples[samples["metric"] == "gpu_utilization_ratio"]
    assert set(gpu["instance"]) == set(names)
    assert {labels["host"] for labels in gpu["labels"]} == {f"sandbox-{n}" for n in names}
    assert set(samples.loc[samples["engine"] == "vllm", "instance"]) == set(names)

    # counters became rates over the window since the first collection's reading
    assert truth["pressure"] > 0 and truth["light"] == 0, truth
    assert _latest(samples, "pressure-0", "preemptions_per_second") > 0
    assert _latest(samples, "light-0", "preemptions_per_second") == 0
    assert _latest(samples, "light-1", "preemptions_per_second") == 0
    assert _latest(samples, "light-0", "generation_tokens_per_second") > 0
    ttft = samples[(samples["instance"] == "light-0") & (samples["metric"] == "ttft_seconds")]
    assert {labels.get("quantile") for labels in ttft["labels"]} >= {"0.5", "0.95"}
    assert _latest(samples, "light-0", "price_usd_per_hour") == pytest.approx(
        latest.loc["light-0", "price_usd_per_hour"]
    )

    # estimated costs: price x the part of each window the server ran
    costs = _stored("costs")
    assert set(costs["source"]) == {"estimated"} and set(costs["resource"]) == set(names)
    for _, cost in costs.iterrows():
        hours = (cost["period_end"] - cost["period_start"]).total_seconds() / 3600
        price = latest.loc[cost["resource"], "price_usd_per_hour"]
        assert 0 < hours <= 30 / 3600 + 1e-9
        # the store keeps times to the millisecond: allow 2 ms of the period
        assert cost["amount"] == pytest.approx(price * hours, abs=price * 0.002 / 3600)


@pytest.mark.prefect
def test_an_interrupted_spot_server_is_skipped_and_the_run_succeeds(
    prefect_harness: None, tmp_path: Path
) -> None:
    with sandbox_thread(_idle_fleet(), load=False) as sandbox:
        control = _control(sandbox)
        answer = httpx.post(f"{control}/sandbox/servers/spot-1/interrupt")
        assert answer.status_code == 200, answer.text
        state = collect_flow(config_path=_config(tmp_path, control, settle=0.2), return_state=True)

    assert state.is_completed(), state
    result = state.result().results[0]
    assert result.status == "ok", result
    assert any("spot-1" in note and "interrupted" in note for note in result.notes), result.notes
    instances = _stored("instances").set_index("instance")
    assert instances.loc["spot-1", "state"] == "interrupted"
    assert "engine_args" not in instances.loc["spot-1", "labels"]  # its port is closed
    assert instances.loc["spot-0", "state"] == "running"
    samples = _stored("samples")
    assert set(samples["instance"]) == {"spot-0", "steady-0"}
    assert "gpu_utilization_ratio" in set(samples.loc[samples["instance"] == "spot-0", "metric"])
    assert set(_stored("costs")["resource"]) == {"spot-0", "steady-0"}


@pytest.mark.prefect
def test_an_unreachable_control_api_fails_the_provider_naming_url_and_field(
    prefect_harness: None, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    state = collect_flow(config_path=_config(tmp_path, url), return_state=True)
    assert state.is_failed()
    result = state.result(raise_on_failure=False).results[0]
    assert result.status == "failed"
    assert f"{url}/sandbox" in result.error and "options.control_url" in result.error
    assert "connection refused" in result.error


@pytest.mark.parametrize(
    ("options", "message"),
    [({}, "Field required"), ({"control_url": "ftp://x"}, "URL scheme"),
     ({"control_url": "http://127.0.0.1:1", "concurency": 2}, "Extra inputs")],
)  # fmt: skip
def test_bad_options_are_config_errors_naming_the_field(
    options: dict[str, Any], message: str
) -> None:
    config = ProviderConfig(name="sb", kind="sandbox", options=options)
    with pytest.raises(ConfigError) as info:
        SandboxProvider(config)
    assert "providers.sb.options." in str(info.value) and message in str(info.value)


def _window() -> CollectionContext:
    end = datetime.now(UTC)
    return CollectionContext(start=end - timedelta(seconds=60), end=end)


def test_a_url_that_is_not_the_control_api_is_named_and_deployments_filter() -> None:
    async def collect(options: dict[str, Any]) -> tuple[SandboxProvider, pd.DataFrame]:
        provider = SandboxProvider(
            ProviderConfig(name="sb", kind="sandbox", options=options), cursors=None
        )
        return provider, await provider.collect_inventory(_window())

    with sandbox_thread(_idle_fleet(), load=False) as sandbox:
        control = _control(sandbox)
        assert sandbox.fleet is not None
        engine = sandbox.fleet.endpoint(sandbox.fleet.servers["steady"][0])
        with pytest.raises(SandboxUnavailable, match=f"{engine}/sandbox.*HTTP 404"):
            asyncio.run(collect({"control_url": engine}))
        provider, frame = asyncio.run(
            collect({"control_url": f"{control}/sandbox", "deployments": ["steady", "gone"]})
        )
    assert list(frame["instance"]) == ["steady-0"]
    assert any("gone" in note for note in provider.notes), provider.notes
