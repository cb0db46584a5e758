"""Acceptance (issue 6, application agent), end to end on a live sandbox fleet: a
deployment whose quality was degraded is reported as a regression with its effect size;
one that got a quality-neutral change is reported as no regression.

The fleet (``optiinfra/sandbox/fleets/quality.yaml``): two identical 8B deployments with
no load. Collection uses the ``sandbox`` provider and golden-set probes over HTTP with
the ``quality`` provider and the sandbox's questions as the golden set; 3 collect runs
under the baseline configuration, then, through each server's ``/admin/config``,
``support-8b`` gets int4 weights and ``search-8b`` ``max_num_seqs`` 32; one more collect
run; then ``optimize_flow``.

Design, and why it is this size:

- Every run probes the whole golden set (227 items): 3 runs before and 1 after give 681
  answers per item set before and 227 after, the smallest design that keeps both
  verdicts right with high probability (``benchmarks/quality_regression_bench.py``
  machinery over 300 seeds: quality-neutral called a regression 0.3%, called "no
  regression" 98%; int4 flagged 98.3%). Fewer items after the change leave int4
  undetected too often; fewer before make the healthy verdict "unknown".
- A sandbox server decides right or wrong with its own seeded random stream, one draw
  per question in arrival order. With one ``quality`` provider per deployment and
  ``concurrency: 1`` each server receives its probes one at a time in the ring's fixed
  order, so the answers — and the verdicts — are the same on every run of this test;
  concurrent probes would reorder the draws and make the test a lottery at the rates
  above. The cost is time: ~50 ms a simulated answer, ~12 s a collect run (the two
  providers run in parallel), about a minute in all.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

import optiinfra.sandbox
from flows.collect import collect_flow
from flows.optimize import optimize_flow
from optiinfra.sandbox.fleet import load_fleet
from optiinfra.sandbox.quality import bundled_items
from tests.e2e.sandbox_thread import SandboxThread, sandbox_thread

pytestmark = pytest.mark.prefect

FLEET = Path(optiinfra.sandbox.__file__).parent / "fleets" / "quality.yaml"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
DEGRADED, NEUTRAL = "support-8b", "search-8b"
RUNS_BEFORE, RUNS_AFTER = 3, 1


def _golden_set(path: Path) -> Path:
    """The sandbox's questions as a golden set, as ``optiinfra sandbox config`` writes it."""
    rows = [
        {"id": q.id, "prompt": q.question, "reference": q.answer, "aliases": list(q.aliases)}
        for q in bundled_items()
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _config(tmp_path: Path, control_port: int, urls: dict[str, str]) -> str:
    golden = _golden_set(tmp_path / "golden.jsonl")
    lines = [
        "version: 1",
        "providers:",
        "  - name: sandbox",
        "    kind: sandbox",
        f"    options: {{control_url: 'http://127.0.0.1:{control_port}'}}",
    ]
    for deployment, url in urls.items():
        lines += [
            f"  - name: quality-{deployment}",
            "    kind: quality",
            "    timeout: 120s",
            "    quality:",
            f"      golden_set: {golden}",
            f"      probes_per_run: {len(bundled_items())}",
            "      concurrency: 1",
            "      targets:",
            f"        - {{deployment: {deployment}, base_url: '{url}/v1', model: {MODEL}}}",
        ]
    path = tmp_path / "providers.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _collect(config: str) -> None:
    summary = collect_flow(config_path=config)
    assert {r.status for r in summary.results} == {"ok"}, summary.results


def _server_urls(sandbox: SandboxThread) -> dict[str, str]:
    fleet = sandbox.fleet
    assert fleet is not None
    return {
        name: sandbox.call(lambda n=name: fleet.endpoint(fleet.servers[n][0]))
        for name in (DEGRADED, NEUTRAL)
    }


def _change(url: str, engine_args: dict[str, object]) -> str:
    response = httpx.patch(f"{url}/admin/config", json={"engine_args": engine_args}, timeout=10)
    response.raise_for_status()
    return str(response.json()["config_id"])


def test_int4_is_a_regression_with_its_effect_size_and_a_neutral_change_is_not(
    prefect_harness: None, tmp_path: Path
) -> None:
    with sandbox_thread(load_fleet(FLEET), load=False) as sandbox:
        assert sandbox.fleet is not None
        urls = _server_urls(sandbox)
        config = _config(tmp_path, sandbox.fleet.control.port, urls)
        for _ in range(RUNS_BEFORE):
            _collect(config)
        degraded_id = _change(urls[DEGRADED], {"quantization": "int4"})
        neutral_id = _change(urls[NEUTRAL], {"max_num_seqs": 32})
        for _ in range(RUNS_AFTER):
            _collect(config)
        summary = optimize_flow(config_path=config, use_llm=False)

    notes = [n for n in summary.notes if n.startswith("[application]")]
    [degraded] = [n for n in notes if n.startswith(f"[application] {DEGRADED}: quality of")]
    [neutral] = [n for n in notes if n.startswith(f"[application] {NEUTRAL}: quality of")]
    print(f"\n{degraded}\n{neutral}")
    assert f"configuration {degraded_id} against" in degraded
    assert ": regression — " in degraded
    size = re.search(r"effect size (-\d\.\d\d) \(Cohen's d_z\)", degraded)
    assert size is not None and float(size.group(1)) < -0.1, degraded
    change = re.search(r"vs baseline \d\.\d+ \((-\d+\.\d)%\)", degraded)
    assert change is not None and float(change.group(1)) < -5.0, degraded
    assert f"{len(bundled_items())} pairs" in degraded  # every item asked before and after

    assert f"configuration {neutral_id} against" in neutral
    assert ": no regression — " in neutral, neutral
    assert "effect size" not in neutral
