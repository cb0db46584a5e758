"""Acceptance (issue 6, application agent): on sandbox-made quality events, a deployment
whose quality was degraded (int4 weights on an 8B model) is flagged as a regression with
its effect size; a quality-neutral change is not — over 200 fixed seeds, so the rates are
measured, not sampled anew on each run (nothing here can flake).

Events come from ``benchmarks/quality_regression_bench.py``: the sandbox's quality model
answering the bundled golden set, scored with ``optiinfra.scoring``, a default quality
provider's probe counts (50 a run every 15 minutes) over a day before the change
(4,800 probes) and an hour after it (200 probes). The verdict is the agent's own call
(``compare_latest_configs``) with the default tenant policy. The full figures over 500
seeds are in docs/quality-statistics.md.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from agents.application.regression import SWEEP_ALPHA, compare_latest_configs
from agents.common.agent import AgentDeps
from agents.registry import get_agent
from benchmarks.quality_regression_bench import change_events, compare
from optiinfra.config.schema import Policy
from tests.agents.fleets import context, default_like

SEEDS = range(200)


@pytest.fixture(scope="module")
def healthy():
    return [compare(change_events("healthy", seed)) for seed in SEEDS]


@pytest.fixture(scope="module")
def int4():
    return [compare(change_events("int4", seed)) for seed in SEEDS]


def test_a_quality_neutral_change_is_a_false_alarm_at_most_5_percent_of_the_time(healthy) -> None:
    flagged = [c for c in healthy if c.flagged]
    rate = len(flagged) / len(healthy)
    print(f"\nhealthy: false-alarm rate {rate:.1%} over {len(healthy)} seeds")
    assert rate <= 0.05
    # Not "fine" for lack of data either: the hour of probes answers the question.
    said_no = [c for c in healthy if c.result.verdict == "no_regression"]
    assert len(said_no) >= 0.9 * len(healthy)
    assert all("no regression" in c.note() for c in said_no)
    assert not any(c.beyond_allowance for c in healthy)


def test_int4_on_an_8b_model_is_flagged_at_least_95_percent_of_the_time_with_its_effect_size(
    int4,
) -> None:
    flagged = [c for c in int4 if c.flagged]
    rate = len(flagged) / len(int4)
    effect = sorted(c.result.effect_size for c in flagged)[len(flagged) // 2]
    print(f"\nint4: detection rate {rate:.1%}, median effect size {effect:+.3f}")
    assert rate >= 0.95
    for c in flagged:
        note = c.note()
        assert note.startswith("chat-8b: quality of configuration after-int4 against baseline")
        assert ": regression — " in note
        assert f"effect size {c.result.effect_size:+.2f} (Cohen's d_z)" in note
        assert c.result.effect_size < 0 and c.result.relative_diff < 0
        assert f"< {SWEEP_ALPHA}" in note  # the p-value and the level it was judged at
    # The sandbox's int4 error (0.22 against 0.10) is a 13% drop: mostly past the
    # default 10% allowance, and said so.
    assert sum(c.beyond_allowance for c in int4) >= 0.7 * len(int4)
    assert any("beyond the tenant's 10% allowance" in c.note() for c in flagged)


def test_the_agent_reports_both_deployments_in_its_notes() -> None:
    """The same events through the application agent's graph (one seed)."""
    healthy = change_events("healthy", 7)
    degraded = change_events("int4", 7)
    healthy["deployment"], degraded["deployment"] = "chat-8b", "rag-8b"
    quality = pd.concat([healthy, degraded], ignore_index=True)
    _, notes = get_agent("application").run(context(default_like(), quality=quality), AgentDeps())
    [rag] = [n for n in notes if n.startswith("rag-8b: quality of configuration after-int4")]
    [chat] = [n for n in notes if n.startswith("chat-8b: quality of configuration after-healthy")]
    assert ": regression — " in rag
    assert re.search(r"effect size -0\.\d\d \(Cohen's d_z\)", rag)
    assert ": no regression — " in chat and "effect size" not in chat
    # compare_latest_configs is what the node ran: the same verdicts.
    allowance = Policy().max_quality_drop
    verdicts = {c.deployment: c.result.verdict for c in compare_latest_configs(
        quality, lambda _tenant: allowance)}  # fmt: skip
    assert verdicts == {"chat-8b": "no_regression", "rag-8b": "regression"}
