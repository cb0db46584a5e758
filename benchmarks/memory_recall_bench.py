"""What learning from outcomes adds to an optimize run: features, recall, adjustment.

Builds a fleet context of ``--deployments`` idle deployments (each gives the cost agent
one proposal), remembers ``--outcomes`` past outcomes in a fresh Qdrant local-mode
directory, then times, median of ``--runs``:

- opening the memory at the start of a run (``MemoryRecall.for_runtime``: open, count);
- the cost agent's graph with no memory, with an empty memory, and with the outcomes
  (features + recall + adjustment for every proposal, one client held per agent);
- the import of qdrant_client in a fresh process (paid once per flow-run process).

Run: ``.venv/bin/python benchmarks/memory_recall_bench.py --deployments 200 --outcomes 1000``
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.common.agent import AgentDeps
from agents.memory import MemoryRecall, OutcomeRecord
from agents.memory.features import DecisionFeatures, decision_vector
from agents.registry import get_agent
from optiinfra.store.memory import DecisionRecord, open_memory
from tests.agents.fleets import Fleet, context


def _median(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--outcomes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    rng = random.Random(7)
    gpus = [("L4", 0.8048), ("A10G", 1.006), ("H100", 6.88)]
    fleets = []
    for i in range(args.deployments):
        gpu, price = gpus[i % len(gpus)]
        fleets.append(Fleet(f"d{i}", gpu=gpu, price=price, rate=0.0, running=0.0,
                            replicas=1 + i % 4, stateless=True))  # fmt: skip
    ctx = context(fleets)
    agent = get_agent("cost")
    workdir = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    url = f"qdrant://{workdir / 'memory'}"
    memory = open_memory(url)
    records = []
    for n in range(args.outcomes):
        gpu = gpus[n % len(gpus)][0]
        features = DecisionFeatures(kind=rng.choice(["idle_shutdown", "spot_migration",
                                    "right_size"]), cloud="aws", gpu=gpu, gpu_count=1,
                                    replicas=rng.randint(1, 8), params_b=8.03,
                                    load_rps_per_replica=rng.random() * 3, price_gap=-rng.random(),
                                    expected_saving_usd_per_month=500.0)  # fmt: skip
        outcome = OutcomeRecord(plan_id=f"p{n}", kind=features.kind, target=f"t{n}",
                                saving_usd_per_month=rng.random() * 600,
                                rolled_back=rng.random() < 0.2)  # fmt: skip
        records.append(DecisionRecord(id=outcome.record_id, vector=decision_vector(features),
                                      kind=features.kind, payload={
                                          "features": features.model_dump(mode="json"),
                                          "outcome": outcome.model_dump(mode="json")}))  # fmt: skip
    start = time.perf_counter()
    memory.upsert(records)
    memory.close()
    print(f"remembered {args.outcomes} outcomes in {time.perf_counter() - start:.1f} s")

    class _Runtime:  # what MemoryRecall.for_runtime reads
        memory_url = url

        class settings:
            lock_timeout_seconds = 60.0

        def open_memory(self) -> Any:
            return open_memory(url)

    open_s = _median(lambda: MemoryRecall.for_runtime(_Runtime()), args.runs)  # type: ignore[arg-type]
    empty_url = f"qdrant://{workdir / 'empty'}"
    open_memory(empty_url).close()
    figures = {
        "no memory": _median(lambda: agent.run(ctx, AgentDeps()), args.runs),
        "empty memory": _median(
            lambda: agent.run(ctx, AgentDeps(recall=MemoryRecall(empty_url, empty=True))),
            args.runs,
        ),
        f"{args.outcomes} outcomes": _median(
            lambda: agent.run(ctx, AgentDeps(recall=MemoryRecall(url))), args.runs
        ),
    }
    proposals, _ = agent.run(ctx, AgentDeps(recall=MemoryRecall(url)))
    adjusted = sum(1 for p in proposals if "similar_outcomes" in p.evidence)
    code = (
        "import time; t = time.perf_counter(); import qdrant_client; print(time.perf_counter() - t)"
    )
    imports = [float(subprocess.check_output([sys.executable, "-c", code])) for _ in range(3)]
    print(f"{args.deployments} deployments, {len(proposals)} proposals ({adjusted} adjusted), "
          f"median of {args.runs}:")  # fmt: skip
    print(f"  open memory at run start (open + count): {open_s * 1000:7.1f} ms")
    for name, seconds in figures.items():
        print(f"  cost agent, {name:<20} {seconds:7.3f} s")
    extra = figures[f"{args.outcomes} outcomes"] - figures["no memory"]
    per = extra / max(1, len(proposals)) * 1000
    print(f"  recall + adjust per proposal:            {per:7.2f} ms")
    print(f"  import qdrant_client (fresh process):    {statistics.median(imports):7.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
