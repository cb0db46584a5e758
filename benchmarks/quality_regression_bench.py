"""Does the application agent flag a degraded sandbox deployment, and leave a healthy one
alone? False-alarm rate, detection rate and effect size over many seeds.

Quality events are made the way the product gets them on the sandbox, without HTTP:

- **Answers** come from the sandbox's own quality model (``optiinfra.sandbox.quality``:
  ``QualityModel.answer``, one ``random.Random(seed)`` per simulated server, as a
  ``SimServer`` draws) to the bundled questions, written as a golden set the way
  ``optiinfra sandbox config`` writes it (prompt = question, reference = answer).
- **Which items when**: the quality provider's ring (``providers.quality.golden``:
  ``select_items`` with consecutive window numbers, salt = the provider name), with a
  default provider's ``probes_per_run`` (50) every 15 minutes (its default interval).
- **Scores**: the project's real scoring (``optiinfra.scoring.exact_match`` /
  ``token_f1``, what the quality provider applies).
- **Periods**: a baseline of ``--baseline-runs`` runs (default 96 = 24 h: 4,800 probes,
  each of the 227 items asked 21-22 times) under the deployment's configuration, then
  ``--after-runs`` runs (default 4 = 1 h, the optimize flow's interval: 200 probes, 200
  distinct items asked once) under the changed one.
- **Verdict**: ``agents.application.regression.compare_latest_configs`` — the very call
  the agent's ``detect`` node makes — with the default tenant policy's
  ``max_quality_drop`` (10 %) as threshold, on F1.

Changes, on ``meta-llama/Llama-3.1-8B-Instruct`` (unquantized, FP16 KV cache):
``healthy`` (``max_num_seqs`` 64 → 32: the answers' error probability is unchanged),
``int4``, ``int8``, ``fp8`` weights (sandbox error 0.10 → 0.22 / 0.115 / 0.105).

Prints, per change: the share flagged as a regression (the false-alarm rate for
``healthy``), the share flagged beyond the tenant's allowance, the other verdicts, the
median relative F1 change and the median effect size, and the command to reproduce.
Benchmarks print figures; nothing here asserts.

Example::

    .venv/bin/python benchmarks/quality_regression_bench.py --seeds 500
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

from agents.application.regression import ConfigComparison, compare_latest_configs
from benchmarks.machine import reproduce_command
from optiinfra.config.schema import Policy
from optiinfra.models import QualityEvent
from optiinfra.sandbox.quality import QualityConfig, QualityModel, bundled_items
from optiinfra.scoring import exact_match, token_f1
from providers.quality.golden import GoldenItem, select_items

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
#: A default quality provider: 50 probes a run, a run every 15 minutes.
PROBES_PER_RUN = 50
INTERVAL = timedelta(minutes=15)
BASELINE_RUNS = 96  # 24 h
AFTER_RUNS = 4  # 1 h: what the first hourly optimize run after a change sees
PROVIDER = "sandbox-quality"
DEPLOYMENT = "chat-8b"
#: The configuration each change moves to (the baseline is unquantized).
CHANGES: dict[str, QualityConfig] = {
    "healthy": QualityConfig(MODEL),  # max_num_seqs 64 → 32: same numerics
    "int4": QualityConfig(MODEL, quantization="int4"),
    "int8": QualityConfig(MODEL, quantization="int8"),
    "fp8": QualityConfig(MODEL, quantization="fp8"),
}
START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


@cache
def golden_items() -> tuple[GoldenItem, ...]:
    """The sandbox's questions as a golden set (as ``optiinfra sandbox config`` writes it)."""
    return tuple(
        GoldenItem(id=q.id, prompt=q.question, reference=q.answer, aliases=q.aliases,
                   category=q.category)
        for q in bundled_items()
    )  # fmt: skip


class _Model(QualityModel):
    """The sandbox's quality model with its prompt lookup memoised: the lookup is a pure
    function of the prompt (the same golden items are asked thousands of times), and the
    random draws — right or wrong, which wrong answer — are still the model's own."""

    def __init__(self) -> None:
        super().__init__()
        self._found: dict[str, Any] = {}

    def lookup(self, prompt: str) -> Any:
        if prompt not in self._found:
            self._found[prompt] = super().lookup(prompt)
        return self._found[prompt]


@cache
def _model() -> QualityModel:
    return _Model()


@cache
def _run_items(window: int, probes_per_run: int) -> tuple[tuple[GoldenItem, str], ...]:
    """The items (and prompt texts) run ``window`` sends: the provider's ring."""
    chosen = select_items(golden_items(), probes_per_run, window, salt=PROVIDER)
    return tuple((item, item.text()) for item in chosen)


@cache
def _scores(item: GoldenItem, text: str) -> tuple[float, float]:
    """(exact match, F1) of one answer: the real scoring, memoised (answers repeat)."""
    return exact_match(text, item.reference, item.aliases), token_f1(
        text, item.reference, item.aliases
    )


def probe_runs(
    config: QualityConfig,
    config_id: str,
    windows: Sequence[int],
    rng: random.Random,
    *,
    probes_per_run: int = PROBES_PER_RUN,
) -> pd.DataFrame:
    """Quality events of one probed deployment over consecutive collection windows."""
    model = _model()
    rows: list[tuple[Any, ...]] = []
    for window in windows:
        ts = START + INTERVAL * window
        for item, prompt in _run_items(window, probes_per_run):
            answer = model.answer(prompt, config, rng)
            if answer is None:
                raise RuntimeError(f"the sandbox does not know golden item {item.id}")
            em, f1 = _scores(item, answer.text)
            rows.append((ts, "default", PROVIDER, DEPLOYMENT, config_id, "probe", item.id,
                         em, f1, None, None))  # fmt: skip
    return pd.DataFrame(rows, columns=list(QualityEvent.COLUMNS))


def change_events(
    change: str,
    seed: int,
    *,
    baseline_runs: int = BASELINE_RUNS,
    after_runs: int = AFTER_RUNS,
    probes_per_run: int = PROBES_PER_RUN,
) -> pd.DataFrame:
    """A deployment's events: ``baseline_runs`` runs unquantized, then ``after_runs``
    runs under ``change`` (one server's random stream, seeded by ``seed``)."""
    rng = random.Random(seed)
    before = probe_runs(
        QualityConfig(MODEL), "baseline", range(baseline_runs), rng, probes_per_run=probes_per_run
    )
    after = probe_runs(
        CHANGES[change],
        f"after-{change}",
        range(baseline_runs, baseline_runs + after_runs),
        rng,
        probes_per_run=probes_per_run,
    )
    return pd.concat([before, after], ignore_index=True)


def compare(events: pd.DataFrame) -> ConfigComparison:
    """The agent's comparison of the latest two configurations, default tenant policy."""
    allowance = Policy().max_quality_drop
    [comparison] = compare_latest_configs(events, lambda _tenant: allowance)
    return comparison


@dataclass(frozen=True)
class Tally:
    """Verdicts of one change over many seeds."""

    change: str
    seeds: int
    verdicts: dict[str, int]
    beyond_allowance: int
    median_relative_change: float
    median_effect_size: float
    effect_size_name: str
    median_pairs: float

    @property
    def flagged_share(self) -> float:
        return self.verdicts.get("regression", 0) / self.seeds

    @property
    def beyond_share(self) -> float:
        return self.beyond_allowance / self.seeds


def tally(change: str, seeds: Sequence[int], **periods: int) -> Tally:
    """Run :func:`compare` for every seed of one change."""
    results = [compare(change_events(change, seed, **periods)) for seed in seeds]
    names = Counter(c.result.effect_size_name for c in results)
    return Tally(
        change=change,
        seeds=len(results),
        verdicts=dict(Counter(c.result.verdict for c in results)),
        beyond_allowance=sum(c.beyond_allowance for c in results),
        median_relative_change=statistics.median(c.result.relative_diff for c in results),
        median_effect_size=statistics.median(c.result.effect_size for c in results),
        effect_size_name=names.most_common(1)[0][0],
        median_pairs=statistics.median(c.result.n_pairs for c in results),
    )


def _wilson_upper(k: int, n: int, z: float = 1.959963984540054) -> float:
    centre = (k + z * z / 2) / (n + z * z)
    half = z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return centre + half


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=500, help="seeds per change (500)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--baseline-runs", type=int, default=BASELINE_RUNS)
    parser.add_argument("--after-runs", type=int, default=AFTER_RUNS)
    parser.add_argument("--probes-per-run", type=int, default=PROBES_PER_RUN)
    parser.add_argument(
        "--changes", default=",".join(CHANGES), help=f"comma-separated of {', '.join(CHANGES)}"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write figures here")
    args = parser.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    periods = {
        "baseline_runs": args.baseline_runs,
        "after_runs": args.after_runs,
        "probes_per_run": args.probes_per_run,
    }
    n_items = len(golden_items())
    print(
        f"sandbox model {MODEL}; golden set {n_items} items; {args.probes_per_run} probes a run "
        f"every {INTERVAL.total_seconds() / 60:g} min"
    )
    print(
        f"baseline: {args.baseline_runs} runs = {args.baseline_runs * args.probes_per_run:,} "
        f"probes; after the change: {args.after_runs} runs = "
        f"{args.after_runs * args.probes_per_run:,} probes; threshold "
        f"{Policy().max_quality_drop:.0%} (default policy); {args.seeds} seeds per change"
    )
    started = time.perf_counter()
    figures: list[dict[str, Any]] = []
    header = (
        f"{'change':8} {'flagged':>8} {'95% upper':>9} {'beyond':>7} {'no regr.':>8} "
        f"{'improv.':>7} {'unknown':>7} {'median Δ':>9} {'median effect size':>26} {'pairs':>5}"
    )
    print(header)
    for change in args.changes.split(","):
        t = tally(change, seeds, **periods)
        flagged = t.verdicts.get("regression", 0)
        print(
            f"{change:8} {t.flagged_share:8.1%} {_wilson_upper(flagged, t.seeds):9.1%} "
            f"{t.beyond_share:7.1%} {t.verdicts.get('no_regression', 0) / t.seeds:8.1%} "
            f"{t.verdicts.get('improvement', 0) / t.seeds:7.1%} "
            f"{t.verdicts.get('unknown', 0) / t.seeds:7.1%} {t.median_relative_change:+9.1%} "
            f"{t.median_effect_size:+7.3f} ({t.effect_size_name:>13}) {t.median_pairs:5.0f}"
        )
        figures.append({**t.__dict__, "flagged_share": t.flagged_share,
                        "beyond_share": t.beyond_share})  # fmt: skip
    seconds = time.perf_counter() - started
    print(
        "flagged = verdict 'regression' (for healthy: the false-alarm rate; '95% upper' is "
        "its Wilson bound); beyond = also a drop of at least the allowance"
    )
    command = reproduce_command("quality_regression_bench.py", argv)
    print(f"{seconds:.1f} s; reproduce with: {command}")
    if args.json is not None:
        args.json.write_text(json.dumps({"periods": periods, "seeds": args.seeds,
                                         "changes": figures}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
