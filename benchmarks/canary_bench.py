"""How often does the canary analysis roll back a real quality regression at the first
rollout step, and how often a healthy change? Over many seeded sandbox runs.

Quality events are made the way the product gets them on the sandbox, without HTTP:

- **Answers** come from the sandbox's quality model (``optiinfra.sandbox.quality``: the
  bundled questions, ``QualityModel.lookup`` and ``wrong_answer``, one right-or-wrong draw
  and one wrong-answer draw per ask, as ``QualityModel.answer`` does) on
  ``meta-llama/Llama-3.1-8B-Instruct`` (error probability 0.0998). The canary's error
  probability is set so that its *expected* score on the tested metric is exactly
  (1 − drop) × the baseline's: with w the mean score of a wrong answer over the golden
  set (0.005 for F1: a few wrong answers share a token with the reference),
  ``p_canary = (1 − (1 − drop)(1 − p_base(1 − w))) / (1 − w)``.
- **Which items**: the quality provider's ring (``providers.quality.golden.select_items``,
  salt = the provider's name), the same items asked of canary and baseline in a run (as
  ``probe_targets`` does); each seed starts at a different ring position.
- **How many**: one rollout step's bake = ``--collections`` collection runs (default 4:
  one hour at the collection interval's default of 15 minutes, ``ProviderConfig.interval``)
  of ``--probes-per-run`` probes (default 50, ``QualitySettings.probes_per_run``) per
  variant: 200 probes, 200 distinct items of the 227, each asked once of each variant.
  ``--history-runs`` adds that many earlier runs of the baseline (its probes before the
  rollout began; default 0: the bake window only).
- **Scores**: the project's scoring (``optiinfra.scoring.exact_match`` / ``token_f1``).
- **Verdict**: ``agents.application.canary.analyse_canary`` with default thresholds (10 %
  allowance, alpha 0.05, F1), plus healthy SLO samples and SLO bounds so that the whole
  check runs.

Prints, per scenario (healthy, 5 %, 10 %, 20 % relative drop): the share failed at the
first step (for healthy: false rollbacks), passed and "wait", with the Wilson 95 % bounds
of the failed share, and the command to reproduce. Benchmarks print; nothing asserts.

Example::

    .venv/bin/python benchmarks/canary_bench.py --seeds 1000
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.application.canary import CanaryReport, CanaryThresholds, analyse_canary
from benchmarks.machine import reproduce_command
from optiinfra.config.schema import ProviderConfig, QualitySettings
from optiinfra.models import QualityEvent, Sample
from optiinfra.sandbox.quality import QAItem, QualityConfig, QualityModel, error_probability
from optiinfra.scoring import exact_match, token_f1
from providers.quality.golden import GoldenItem, select_items

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
PROBES_PER_RUN: int = QualitySettings.model_fields["probes_per_run"].default  # 50
INTERVAL = timedelta(seconds=ProviderConfig.model_fields["interval"].default)  # 15 min
COLLECTIONS = 4  # a one-hour bake
PROVIDER = "sandbox-quality"
DEPLOYMENT = "chat-8b"
CANARY, BASELINE = "canary-cfg", "baseline-cfg"
CANARY_INSTANCES, BASELINE_INSTANCES = ("chat-8b-3",), ("chat-8b-0", "chat-8b-1", "chat-8b-2")
#: Scenario name → relative drop of the canary's expected score.
SCENARIOS: dict[str, float] = {"healthy": 0.0, "drop-5%": 0.05, "drop-10%": 0.10, "drop-20%": 0.20}
START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
#: SLO bounds the runs check, against healthy latency samples (quality is what varies).
THRESHOLDS = CanaryThresholds(ttft_p95_s=0.5, itl_p95_s=0.05, max_error_rate=0.01)


class _Model(QualityModel):
    """The sandbox's quality model, answering with a given error probability.

    ``answer_with`` makes the same two draws as ``QualityModel.answer`` (right or wrong,
    then which wrong answer), with ``p`` in place of the configuration's error
    probability, so a canary can be made exactly as much worse as a scenario asks. The
    prompt lookup is memoised (the same items are asked thousands of times)."""

    def __init__(self) -> None:
        super().__init__()
        self._found: dict[str, QAItem] = {}

    def answer_with(self, prompt: str, p: float, rng: random.Random) -> str:
        if prompt not in self._found:
            item = self.lookup(prompt)
            if item is None:
                raise RuntimeError(f"the sandbox does not know the golden prompt {prompt!r}")
            self._found[prompt] = item
        item = self._found[prompt]
        return self.wrong_answer(item, rng) if rng.random() < p else item.answer


@cache
def model() -> _Model:
    return _Model()


@cache
def golden_items() -> tuple[GoldenItem, ...]:
    """The sandbox's questions as a golden set (as ``optiinfra sandbox config`` writes it)."""
    return tuple(
        GoldenItem(id=q.id, prompt=q.question, reference=q.answer, aliases=q.aliases,
                   category=q.category)
        for q in model().items
    )  # fmt: skip


@cache
def _run_items(window: int, probes_per_run: int) -> tuple[tuple[GoldenItem, str], ...]:
    chosen = select_items(golden_items(), probes_per_run, window, salt=PROVIDER)
    return tuple((item, item.text()) for item in chosen)


@cache
def _scores(item: GoldenItem, text: str) -> tuple[float, float]:
    """(exact match, F1) of one answer, memoised (answers repeat)."""
    return (
        exact_match(text, item.reference, item.aliases),
        token_f1(text, item.reference, item.aliases),
    )


@cache
def wrong_answer_score(metric: str) -> float:
    """Mean score of a wrong answer over the golden set (each wrong answer equally likely,
    as ``wrong_answer`` picks them)."""
    index = 0 if metric == "exact_match" else 1
    m = model()
    means = []
    for item in golden_items():
        wrong = m._wrong[item.id]  # the model's own list of plausible wrong answers
        means.append(statistics.fmean(_scores(item, w)[index] for w in wrong))
    return statistics.fmean(means)


def baseline_error() -> float:
    return error_probability(QualityConfig(MODEL))


def canary_error(drop: float, metric: str = "f1") -> float:
    """The error probability whose expected ``metric`` is (1 − drop) × the baseline's."""
    w = wrong_answer_score(metric)
    base_score = 1.0 - baseline_error() * (1.0 - w)
    return (1.0 - (1.0 - drop) * base_score) / (1.0 - w)


def _events(
    config_id: str, p: float, windows: Sequence[int], rng: random.Random, probes_per_run: int
) -> list[tuple[Any, ...]]:
    m = model()
    rows = []
    for window in windows:
        ts = START + INTERVAL * window
        for item, prompt in _run_items(window, probes_per_run):
            em, f1 = _scores(item, m.answer_with(prompt, p, rng))
            rows.append((ts, "default", PROVIDER, DEPLOYMENT, config_id, "probe", item.id,
                         em, f1, None, None))  # fmt: skip
    return rows


def step_events(
    drop: float,
    seed: int,
    *,
    collections: int = COLLECTIONS,
    probes_per_run: int = PROBES_PER_RUN,
    history_runs: int = 0,
    metric: str = "f1",
) -> pd.DataFrame:
    """Quality events of one rollout step: canary and baseline probed on the same items
    for ``collections`` runs (plus ``history_runs`` earlier baseline-only runs). Each
    variant is its own server with its own random stream; the baseline's stream depends
    only on ``seed``, so scenarios of one seed share the baseline's answers."""
    seeder = random.Random(seed)
    rng_baseline, rng_canary = (
        random.Random(seeder.getrandbits(64)),
        random.Random(seeder.getrandbits(64)),
    )
    first = history_runs + seed * collections  # a different ring position per seed
    bake = range(first, first + collections)
    rows = _events(
        BASELINE, baseline_error(), range(first - history_runs, first + collections),
        rng_baseline, probes_per_run,
    )  # fmt: skip
    rows += _events(CANARY, canary_error(drop, metric), bake, rng_canary, probes_per_run)
    return pd.DataFrame(rows, columns=list(QualityEvent.COLUMNS))


@cache
def healthy_samples(collections: int = COLLECTIONS) -> pd.DataFrame:
    """Latency and request-rate samples of a bake where nobody breaks an SLO."""
    rows = []
    for k in range(collections):
        ts = START + INTERVAL * k
        for instance in (*CANARY_INSTANCES, *BASELINE_INSTANCES):
            for metric, value, labels in (
                ("ttft_seconds", 0.21, {"quantile": "0.95"}),
                ("itl_seconds", 0.031, {"quantile": "0.95"}),
                ("request_success_per_second", 4.0, {}),
                ("request_failure_per_second", 0.004, {}),
            ):
                rows.append((ts, "default", "sandbox", "", instance, DEPLOYMENT, "vllm",
                             metric, value, labels))  # fmt: skip
    return pd.DataFrame(rows, columns=list(Sample.COLUMNS))


def analyse(events: pd.DataFrame, thresholds: CanaryThresholds = THRESHOLDS) -> CanaryReport:
    """The canary analysis the rollout flow runs at the end of a step's bake."""
    return analyse_canary(
        quality=events,
        samples=healthy_samples(),
        canary_config=CANARY,
        baseline_config=BASELINE,
        canary_instances=CANARY_INSTANCES,
        baseline_instances=BASELINE_INSTANCES,
        thresholds=thresholds,
    )


@dataclass(frozen=True)
class Tally:
    """Verdicts of one scenario over many seeds."""

    scenario: str
    drop: float
    seeds: int
    verdicts: dict[str, int]
    median_observed_drop: float

    def share(self, verdict: str) -> float:
        return self.verdicts.get(verdict, 0) / self.seeds


def tally(scenario: str, seeds: Sequence[int], **step: Any) -> Tally:
    """Run the analysis on one scenario for every seed."""
    drop = SCENARIOS[scenario]
    thresholds = CanaryThresholds(
        ttft_p95_s=THRESHOLDS.ttft_p95_s, itl_p95_s=THRESHOLDS.itl_p95_s,
        max_error_rate=THRESHOLDS.max_error_rate, metric=step.get("metric", "f1"),
    )  # fmt: skip
    reports = [analyse(step_events(drop, seed, **step), thresholds) for seed in seeds]
    drops = [r.figures["quality_drop"] for r in reports if "quality_drop" in r.figures]
    return Tally(
        scenario=scenario,
        drop=drop,
        seeds=len(reports),
        verdicts=dict(Counter(r.verdict for r in reports)),
        median_observed_drop=statistics.median(drops) if drops else math.nan,
    )


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson 95 % interval of a share k/n."""
    centre = (k + z * z / 2) / (n + z * z)
    half = z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return max(0.0, centre - half), min(1.0, centre + half)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1000, help="seeds per scenario (1000)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--collections", type=int, default=COLLECTIONS,
                        help="collection runs in one step's bake (4 = 1 h at 15 min)")  # fmt: skip
    parser.add_argument("--probes-per-run", type=int, default=PROBES_PER_RUN)
    parser.add_argument("--history-runs", type=int, default=0,
                        help="earlier baseline-only runs passed too (0)")  # fmt: skip
    parser.add_argument("--metric", default="f1", choices=["f1", "exact_match"])
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated of " + ", ".join(SCENARIOS).replace("%", "%%"),
    )
    parser.add_argument("--json", type=Path, default=None, help="also write figures here")
    args = parser.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    step = {
        "collections": args.collections,
        "probes_per_run": args.probes_per_run,
        "history_runs": args.history_runs,
        "metric": args.metric,
    }
    probes = args.collections * args.probes_per_run
    history = args.history_runs * args.probes_per_run
    print(
        f"sandbox model {MODEL} (error {baseline_error():.4f}); golden set "
        f"{len(golden_items())} items; one step = {args.collections} collections x "
        f"{args.probes_per_run} probes = {probes} probes per variant"
        + (f", plus {history} earlier baseline probes" if history else "")
    )
    t = THRESHOLDS
    print(
        f"analyse_canary: {args.metric}, allowance {t.max_quality_drop:.0%}, alpha {t.alpha}, "
        f"min {t.min_quality_samples} items; {args.seeds} seeds per scenario"
    )
    started = time.perf_counter()
    figures: list[dict[str, Any]] = []
    print(
        f"{'scenario':9} {'p canary':>8} {'failed':>7} {'95% interval':>15} {'passed':>7} "
        f"{'wait':>6} {'median drop':>11}"
    )
    for name in args.scenarios.split(","):
        result = tally(name, seeds, **step)
        low, high = wilson(result.verdicts.get("fail", 0), result.seeds)
        print(
            f"{name:9} {canary_error(result.drop, args.metric):8.4f} "
            f"{result.share('fail'):7.1%} {f'{low:.1%}-{high:.1%}':>15} "
            f"{result.share('pass'):7.1%} {result.share('wait'):6.1%} "
            f"{result.median_observed_drop:+11.1%}"
        )
        figures.append({**result.__dict__, "fail_share": result.share("fail"),
                        "fail_low": low, "fail_high": high,
                        "wait_share": result.share("wait")})  # fmt: skip
    seconds = time.perf_counter() - started
    print(
        "failed = rolled back at the first step (healthy: a false rollback); targets: "
        ">= 99% of 20% drops failed, <= 2% of healthy failed"
    )
    command = reproduce_command("canary_bench.py", argv)
    print(f"{seconds:.1f} s; reproduce with: {command}")
    if args.json is not None:
        args.json.write_text(json.dumps({"step": step, "seeds": args.seeds,
                                         "scenarios": figures}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
