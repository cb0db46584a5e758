"""`optiinfra optimize --once`: the agents run now and their plans are printed and stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from optiinfra.cli import main
from optiinfra.runtime import load_runtime

pytestmark = pytest.mark.prefect


def test_optimize_once_after_a_collection_prints_and_stores_the_run(
    prefect_harness: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["collect", "--once"]) == 0
    capsys.readouterr()
    assert main(["optimize", "--once", "--no-llm"]) == 0
    out = capsys.readouterr().out
    # The local provider is one host without an inference engine: nothing to plan, and
    # the output says why rather than staying silent.
    assert "0 plan(s) waiting for approval" in out
    assert "optimize-report" in out
    state = load_runtime(None).open_state()
    try:
        assert state.count("plans") == 0
    finally:
        state.close()


def test_an_unknown_agent_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["optimize", "--once", "--agent", "nope"]) != 0
    err = capsys.readouterr().err
    assert "unknown agent(s) nope" in err and "cost" in err and "performance" in err


def test_a_bad_window_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["optimize", "--once", "--window", "soon"]) != 0
    assert "--window" in capsys.readouterr().err


def test_optimize_needs_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["optimize"])
