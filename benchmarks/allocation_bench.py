"""How fast the GPU allocation integer program solves, and what it saves over greedy rules.

One seeded instance of ``--options`` GPU options x ``--deployments`` deployments:

- **Options** are (cloud, region, instance type, market) offerings of the public price
  table (``optiinfra.catalog.price_table``; a region's price is the lower median over its
  zones, as ``quote`` takes it), drawn at random; beyond what the table holds, synthetic
  ones are copies of real ones with the price scaled by 0.8-1.2 (flagged ``synthetic``).
  Availability caps: every spot option 2-8 replicas, on-demand A100/H100/H200 1-4.
- **Deployments** take a model of the public model table, a request rate log-uniform in
  ``--rate-range`` requests/s, spot allowed for half of them (one on-demand replica kept).
- **Capacity** (requests/s per replica within the SLO) is a stated rough model, not the
  project's capacity model: the model fits when its FP16 weights take at most 80 % of the
  replica's GPU memory; decode is memory-bound, so one replica makes
  ``bandwidth / weight bytes`` decode steps per second, times a batch that the free memory
  allows (up to 64 sequences at 1 GB of KV cache each), over ``OUTPUT_TOKENS`` tokens per
  request, times 0.9 per doubling of GPUs (tensor-parallel overhead).

Figures: the MILP's solve time (median of ``--runs`` solves) and cost; a greedy baseline
that gives each deployment its cheapest single-option allocation ignoring the caps (its
cost, and how far it overshoots the caps); the MILP with the caps removed (the gain of
mixing GPU types alone, against that same greedy); and a greedy that respects the caps,
serving the largest deployments first (its cost and deployments left unserved).

Example::

    .venv/bin/python benchmarks/allocation_bench.py --json /tmp/allocation_bench.json

HiGHS itself may print ``HighsMipSolverData::transformNewIntegerFeasibleSolution`` lines
on some instances (a debug message compiled into scipy's copy); they are not errors.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.cost.allocation import Allocation, Demand, GpuOption, solve_allocation
from benchmarks.machine import machine, reproduce_command
from optiinfra.catalog import gpu_spec, model_specs, price_table
from optiinfra.catalog._tables import CatalogError

OUTPUT_TOKENS = 256
KV_GB_PER_SEQUENCE = 1.0
MAX_BATCH = 64
# GPUs the spec table lacks, as the price table names them (datasheet figures).
EXTRA_SPECS = {"V100": (16.0, 900.0), "A6000": (48.0, 768.0)}  # GiB, GB/s
SCARCE = ("A100", "H100", "H200")


def real_options() -> list[GpuOption]:
    """Every priced (offering, market) of the public table, one price per region."""
    table = price_table()
    options = []
    keys = ["cloud", "region", "instance_type", "gpu", "gpu_count"]
    for (cloud, region, instance, gpu, count), rows in table.groupby(keys):
        for market, column in (
            ("on-demand", "on_demand_usd_per_hour"),
            ("spot", "spot_usd_per_hour"),
        ):
            prices = rows[column].dropna().tolist()
            if prices:
                options.append(
                    GpuOption(
                        key=f"{cloud}/{region}/{instance}/{market}",
                        gpu=str(gpu),
                        gpu_count=int(count),
                        market=market,
                        usd_per_hour=float(statistics.median_low(prices)),
                        cloud=str(cloud),
                        region=str(region),
                        instance_type=str(instance),
                    )
                )
    return options


def pick_options(n: int, rng: random.Random) -> tuple[list[GpuOption], int]:
    """``n`` options with availability caps; how many of them are synthetic."""
    pool = real_options()
    chosen = rng.sample(pool, min(n, len(pool)))
    synthetic = 0
    while len(chosen) < n:
        base = rng.choice(pool)
        synthetic += 1
        chosen.append(
            replace(
                base,
                key=f"{base.key}/synthetic-{synthetic}",
                usd_per_hour=round(base.usd_per_hour * rng.uniform(0.8, 1.2), 4),
            )
        )
    capped = []
    for option in chosen:
        cap = None
        if option.market == "spot":
            cap = rng.randint(2, 8)
        elif option.gpu.startswith(SCARCE):
            cap = rng.randint(1, 4)
        capped.append(replace(option, max_replicas=cap))
    return capped, synthetic


def capacity_rps(model: str, option: GpuOption) -> float:
    """The rough capacity model stated in the module docstring (0 = does not fit)."""
    try:
        spec = gpu_spec(option.gpu)
        memory_gb, bandwidth = spec.memory_gib * 1.074, spec.memory_bandwidth_gbps
    except CatalogError:
        memory_gb, bandwidth = EXTRA_SPECS[option.gpu]
    if option.gpu == "V100":
        memory_gb, bandwidth = EXTRA_SPECS["V100"]  # the table's V100 is the 16 GB part
    weights_gb = model_specs()[model].params_b * 2
    total_gb = memory_gb * option.gpu_count
    if weights_gb > 0.8 * total_gb:
        return 0.0
    steps = bandwidth * option.gpu_count / weights_gb
    batch = min(MAX_BATCH, (total_gb - weights_gb) / KV_GB_PER_SEQUENCE)
    overhead = 0.9 ** math.log2(option.gpu_count)
    return round(steps * batch / OUTPUT_TOKENS * overhead, 3)


def pick_demands(
    n: int, options: list[GpuOption], rng: random.Random, rate_range: tuple[float, float]
) -> list[Demand]:
    models = sorted(model_specs())
    demands = []
    for i in range(n):
        model = rng.choice(models)
        capacity = {o.key: c for o in options if (c := capacity_rps(model, o)) > 0}
        low, high = rate_range
        rate = round(math.exp(rng.uniform(math.log(low), math.log(high))), 2)
        demands.append(
            Demand(
                deployment=f"d{i}-{model.split('/')[-1]}",
                rate_rps=rate,
                capacity_rps=capacity,
                min_replicas=rng.choice([1, 2]),
                allow_spot=rng.random() < 0.5,
            )
        )
    return demands


# -- greedy baselines --------------------------------------------------------------------------


def homogeneous(
    demand: Demand, options: list[GpuOption], room: dict[str, float]
) -> tuple[float, dict[str, int]] | None:
    """The cheapest allocation of one option (plus the on-demand floor under spot) that
    fits in ``room`` (option key -> replicas left)."""
    serving = [o for o in options if demand.capacity_rps.get(o.key, 0.0) > 0]
    stays = [o for o in serving if o.market != "spot"]
    best: tuple[float, dict[str, int]] | None = None

    def consider(alloc: dict[str, int]) -> None:
        nonlocal best
        if all(n <= room[k] for k, n in alloc.items()):
            cost = sum(n * o.usd_per_hour for o in options for k, n in alloc.items() if k == o.key)
            if best is None or cost < best[0]:
                best = (cost, alloc)

    for option in serving:
        cap = demand.capacity_rps[option.key]
        n = max(math.ceil(demand.rate_rps / cap), demand.min_replicas)
        if option.market != "spot":
            consider({option.key: n})
        elif demand.allow_spot and stays:
            floor = min(stays, key=lambda o: o.usd_per_hour)
            k = demand.min_on_demand
            rest = demand.rate_rps - k * demand.capacity_rps[floor.key]
            spot_n = max(math.ceil(max(rest, 0.0) / cap), demand.min_replicas - k, 0)
            consider({floor.key: k, option.key: spot_n} if spot_n else {floor.key: k})
    return best


def greedy(demands: list[Demand], options: list[GpuOption], *, caps: bool) -> dict[str, Any]:
    room = {
        o.key: (o.max_replicas if caps and o.max_replicas is not None else math.inf)
        for o in options
    }
    cost, unserved, used = 0.0, 0, dict.fromkeys(room, 0)
    for demand in sorted(demands, key=lambda d: -d.rate_rps) if caps else demands:
        found = homogeneous(demand, options, room)
        if found is None:
            unserved += 1
            continue
        cost += found[0]
        for key, n in found[1].items():
            used[key] += n
            room[key] -= n
    over = {o.key: used[o.key] - o.max_replicas for o in options if o.max_replicas is not None}
    over = {k: v for k, v in over.items() if v > 0}
    return {
        "usd_per_hour": round(cost, 4),
        "unserved": unserved,
        "caps_exceeded": len(over),
        "replicas_over_caps": sum(over.values()),
    }


def timed(
    demands: list[Demand], options: list[GpuOption], runs: int, args: argparse.Namespace
) -> tuple[Allocation, list[float]]:
    times, allocation = [], None
    for _ in range(runs):
        start = time.perf_counter()
        allocation = solve_allocation(
            demands, options, time_limit_s=args.time_limit, rel_gap=args.rel_gap
        )
        times.append(time.perf_counter() - start)
    assert allocation is not None
    return allocation, times


def one_instance(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    options, synthetic = pick_options(args.options, rng)
    demands = pick_demands(args.deployments, options, rng, tuple(args.rate_range))
    allocation, times = timed(demands, options, args.runs, args)
    uncapped_options = [replace(o, max_replicas=None) for o in options]
    uncapped, uncapped_times = timed(demands, uncapped_options, 1, args)
    mixed = sum(len(per) > 1 for per in allocation.replicas.values())
    return {
        "seed": seed,
        "options": len(options),
        "synthetic_options": synthetic,
        "capped_options": sum(o.max_replicas is not None for o in options),
        "deployments": len(demands),
        "replica_variables": sum(len(d.capacity_rps) for d in demands),
        "milp": {
            "status": allocation.status,
            "optimal": allocation.optimal,
            "gap": allocation.gap,
            "usd_per_hour": round(allocation.usd_per_hour, 4),
            "solve_seconds_median": round(statistics.median(times), 4),
            "solve_seconds_all": [round(t, 4) for t in times],
            "unserved": len(allocation.infeasible),
            "deployments_mixing_options": mixed,
            "replicas": allocation.replicas,
        },
        "milp_without_caps": {
            "usd_per_hour": round(uncapped.usd_per_hour, 4),
            "optimal": uncapped.optimal,
            "solve_seconds": round(uncapped_times[0], 4),
        },
        "greedy_ignoring_caps": greedy(demands, options, caps=False),
        "greedy_within_caps": greedy(demands, options, caps=True),
    }


def summary(instances: list[dict[str, Any]]) -> dict[str, Any]:
    solve = [i["milp"]["solve_seconds_median"] for i in instances]
    mixing = [
        _saving(i["milp_without_caps"]["usd_per_hour"], i["greedy_ignoring_caps"]["usd_per_hour"])
        for i in instances
    ]
    both = [
        i
        for i in instances
        if i["greedy_within_caps"]["unserved"] == 0 and i["milp"]["unserved"] == 0
    ]
    within = [
        _saving(i["milp"]["usd_per_hour"], i["greedy_within_caps"]["usd_per_hour"]) for i in both
    ]
    return {
        "instances": len(instances),
        "all_optimal": all(i["milp"]["optimal"] for i in instances),
        "largest_gap": max((i["milp"]["gap"] or 0.0) for i in instances),
        "solve_seconds_median": round(statistics.median(solve), 4),
        "solve_seconds_max": round(max(solve), 4),
        "uncapped_saving_vs_greedy_pct_median": round(statistics.median(mixing), 2),
        "uncapped_saving_vs_greedy_pct_range": [round(min(mixing), 2), round(max(mixing), 2)],
        "greedy_ignoring_caps_breaks_caps": sum(
            i["greedy_ignoring_caps"]["caps_exceeded"] > 0 for i in instances
        ),
        "capped_saving_vs_greedy_within_caps_pct_median": (
            round(statistics.median(within), 2) if within else None
        ),
        "capped_compared_instances": len(within),
        "greedy_within_caps_leaves_unserved": sum(
            i["greedy_within_caps"]["unserved"] > 0 for i in instances
        ),
        "milp_leaves_unserved": sum(i["milp"]["unserved"] > 0 for i in instances),
    }


def _saving(new: float, old: float) -> float:
    """Percent of ``old`` that ``new`` saves (negative when it costs more)."""
    return (old - new) / old * 100 if old else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--options", type=int, default=50)
    parser.add_argument("--deployments", type=int, default=10)
    parser.add_argument("--instances", type=int, default=20, help="seeded instances")
    parser.add_argument("--runs", type=int, default=5, help="solves per instance")
    parser.add_argument("--seed", type=int, default=0, help="first instance's seed")
    parser.add_argument("--rate-range", type=float, nargs=2, default=(2.0, 400.0))
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per solve")
    parser.add_argument("--rel-gap", type=float, default=0.0, help="solve_allocation(rel_gap=)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    command = reproduce_command("allocation_bench.py")
    instances = []
    for seed in range(args.seed, args.seed + args.instances):
        instance = one_instance(args, seed)
        instances.append(instance)
        report(instance)
    figures = {
        "command": command,
        "machine": machine(),
        "summary": summary(instances),
        "instances": instances,
    }
    print("summary:", json.dumps(figures["summary"], indent=2))
    print(f"reproduce: {command}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")


def report(i: dict[str, Any]) -> None:
    milp, free = i["milp"], i["milp_without_caps"]
    loose, tight = i["greedy_ignoring_caps"], i["greedy_within_caps"]
    print(
        f"seed {i['seed']}: {i['options']} options ({i['capped_options']} capped, "
        f"{i['synthetic_options']} synthetic) x {i['deployments']} deployments, "
        f"{i['replica_variables']} variables | MILP {milp['status']} (gap {milp['gap']}) "
        f"${milp['usd_per_hour']}/h in {milp['solve_seconds_median']} s, "
        f"unserved {milp['unserved']} | without caps: MILP ${free['usd_per_hour']}/h, "
        f"greedy ${loose['usd_per_hour']}/h ({loose['caps_exceeded']} caps broken) | "
        f"greedy within caps ${tight['usd_per_hour']}/h, unserved {tight['unserved']}"
    )


if __name__ == "__main__":
    main()
