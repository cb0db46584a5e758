"""``optiinfra rollout PLAN_ID`` refuses, before any flow runs, what may not be applied."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.optimize import optimize_flow
from tests.flows.idle_fleet import seed_idle, write_config

pytestmark = pytest.mark.prefect

OPTIINFRA = str(Path(sys.executable).with_name("optiinfra"))


def _run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIINFRA_")}
    env["OPTIINFRA_HOME"] = str(home)
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([OPTIINFRA, *args], env=env, capture_output=True, text=True, timeout=120)


def test_rollout_refuses_unknown_and_unapproved_plans_and_bad_steps(
    prefect_harness: None, optiinfra_home: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    seed_idle(config, ("idle-a",))
    summary = optimize_flow(config_path=config, agents=["cost"], use_llm=False,
                            wait_for_approval=False)  # fmt: skip
    [plan_id] = summary.plan_ids

    pending = _run("--config", config, "rollout", plan_id, home=optiinfra_home)
    assert pending.returncode == 1
    assert f"plan {plan_id} is not approved (no stored decision)" in pending.stderr
    assert "Traceback" not in pending.stderr and "Flow run" not in pending.stderr

    unknown = _run("--config", config, "rollout", "nope123", home=optiinfra_home)
    assert unknown.returncode == 1 and "no such plan" in unknown.stderr

    steps = _run("--config", config, "rollout", plan_id, "--steps", "50,10", home=optiinfra_home)
    assert steps.returncode != 0 and "--steps" in steps.stderr
