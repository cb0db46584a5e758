"""The GPU allocation integer program: equal to brute force, on random and real prices.

The brute-force enumerator below shares no code with the allocator: it lists every
allocation of up to ``BOUND`` replicas per option, keeps those that meet a deployment's
own constraints, and combines deployments under the shared availability caps, ranking by
(deployments left unserved, cost, replicas, spot replicas) — the order the allocator
promises. Random instances keep ``rate <= BOUND * smallest capacity`` (and floors <=
``BOUND``), so no least-cost allocation needs more than ``BOUND`` of any option.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

import pytest

from agents.cost.allocation import (
    AllocationInputError,
    Demand,
    GpuOption,
    solve_allocation,
)
from optiinfra.catalog.prices import price_table, quote

BOUND = 4


# -- brute force ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Best:
    dropped: int
    cost: float
    replicas: int
    spot: int


def _serves(demand: Demand, options: Sequence[GpuOption], counts: tuple[int, ...]) -> bool:
    """Does one deployment's allocation meet its own constraints and the option caps?"""
    total = spot = stay = 0
    capacity = 0.0
    for option, n in zip(options, counts, strict=True):
        if n == 0:
            continue
        per_replica = demand.capacity_rps.get(option.key, 0.0)
        if per_replica <= 0:  # a replica that cannot run the model is no replica
            return False
        if option.max_replicas is not None and n > option.max_replicas:
            return False
        if option.market == "spot":
            if not demand.allow_spot:
                return False
            spot += n
        else:
            stay += n
        total += n
        capacity += n * per_replica
    if spot and stay < demand.min_on_demand:
        return False
    if demand.max_replicas is not None and total > demand.max_replicas:
        return False
    return total >= demand.min_replicas and capacity >= demand.rate_rps * (1 - 1e-9)


def _minimal(allocations: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Drop allocations that use at least as much of every option as another one does
    (with prices >= 0 that one is as good on every count and leaves more room)."""
    return [
        a
        for a in allocations
        if not any(b != a and all(x <= y for x, y in zip(b, a, strict=True)) for b in allocations)
    ]


def brute_force(demands: Sequence[Demand], options: Sequence[GpuOption]) -> Best:
    choices = []
    for demand in demands:
        ok = [
            counts
            for counts in product(range(BOUND + 1), repeat=len(options))
            if _serves(demand, options, counts)
        ]
        choices.append([*_minimal(ok), None])  # None: left unserved
    best: tuple[int, float, int, int] | None = None
    for pick in product(*choices):
        used = [sum(c[i] for c in pick if c is not None) for i in range(len(options))]
        if any(
            o.max_replicas is not None and u > o.max_replicas
            for o, u in zip(options, used, strict=True)
        ):
            continue
        key = (
            sum(c is None for c in pick),
            round(sum(o.usd_per_hour * u for o, u in zip(options, used, strict=True)), 6),
            sum(used),
            sum(u for o, u in zip(options, used, strict=True) if o.market == "spot"),
        )
        if best is None or key < best:
            best = key
    assert best is not None  # leaving everything unserved is always possible
    return Best(*best)


def _summary(allocation, options: Sequence[GpuOption]) -> Best:
    market = {o.key: o.market for o in options}
    counts = [n for per in allocation.replicas.values() for n in per.values()]
    spot = [
        n for per in allocation.replicas.values() for k, n in per.items() if market[k] == "spot"
    ]
    return Best(
        len(allocation.infeasible), round(allocation.usd_per_hour, 6), sum(counts), sum(spot)
    )


def _check_feasible(allocation, demands: Sequence[Demand], options: Sequence[GpuOption]) -> None:
    """Whatever the allocator returns meets every constraint, checked independently."""
    index = {o.key: i for i, o in enumerate(options)}
    used = [0] * len(options)
    for demand in demands:
        if demand.deployment in allocation.infeasible:
            assert demand.deployment not in allocation.replicas
            continue
        counts = [0] * len(options)
        for key, n in allocation.replicas[demand.deployment].items():
            counts[index[key]] = n
            used[index[key]] += n
        assert _serves(demand, options, tuple(counts)), (demand, counts)
    for option, u in zip(options, used, strict=True):
        assert option.max_replicas is None or u <= option.max_replicas


# -- random instances ----------------------------------------------------------------------


def _random_instance(seed: int) -> tuple[list[Demand], list[GpuOption]]:
    rng = random.Random(seed)
    n_options = rng.choice([3, 4])
    n_demands = 3 if n_options == 3 else 2
    options = []
    for i in range(n_options):
        market = rng.choice(["on-demand", "on-demand", "spot", "reserved"])
        options.append(
            GpuOption(
                key=f"opt{i}/{market}",
                gpu=f"G{i}",
                gpu_count=rng.choice([1, 2, 4]),
                market=market,
                usd_per_hour=rng.choice([0.5, 1.0, 1.5, 2.0, 3.0]),  # ties are common
                max_replicas=rng.choice([None, None, 1, 2, 3, 4]),
            )
        )
    demands = []
    for d in range(n_demands):
        capacity = {o.key: float(rng.choice([0, 1, 2, 3, 5, 8])) for o in options}
        if rng.random() < 0.5:
            capacity = {k: v for k, v in capacity.items() if v > 0}  # missing = cannot serve
        positive = [v for v in capacity.values() if v > 0]
        smallest = min(positive) if positive else 1.0
        rate = rng.choice([0.0, rng.uniform(0, BOUND * smallest), float(rng.randint(1, 12))])
        rate = min(rate, BOUND * smallest)
        min_replicas = rng.choice([0, 1, 1, 2])
        max_replicas = rng.choice([None, None, 2, 3, 6])
        if max_replicas is not None:
            max_replicas = max(max_replicas, min_replicas)
        demands.append(
            Demand(
                deployment=f"dep{d}",
                rate_rps=rate,
                capacity_rps=capacity,
                min_replicas=min_replicas,
                min_on_demand=rng.choice([0, 1, 1, 2]),
                allow_spot=rng.random() < 0.6,
                max_replicas=max_replicas,
            )
        )
    return demands, options


@pytest.mark.parametrize("seed", range(150))
def test_equals_brute_force_on_random_instances(seed: int) -> None:
    demands, options = _random_instance(seed)
    allocation = solve_allocation(demands, options)
    assert allocation.optimal, allocation.status
    assert _summary(allocation, options) == brute_force(demands, options)
    _check_feasible(allocation, demands, options)


def test_random_instances_exercise_every_constraint() -> None:
    """The random instances above are not all easy: each situation occurs in some of them."""
    seen: dict[str, int] = dict.fromkeys(["dropped", "spot", "cap_binds", "mixed", "zero"], 0)
    for seed in range(150):
        demands, options = _random_instance(seed)
        allocation = solve_allocation(demands, options)
        seen["dropped"] += bool(allocation.infeasible)
        market = {o.key: o.market for o in options}
        used: dict[str, int] = {}
        for per in allocation.replicas.values():
            seen["mixed"] += len(per) > 1
            seen["spot"] += any(market[k] == "spot" for k in per)
            for k, n in per.items():
                used[k] = used.get(k, 0) + n
        seen["cap_binds"] += any(
            o.max_replicas and used.get(o.key) == o.max_replicas for o in options
        )
        seen["zero"] += any(d.rate_rps == 0 for d in demands)
    assert all(count >= 5 for count in seen.values()), seen


# -- real prices ---------------------------------------------------------------------------

REGION = ("aws", "us-east-1")
# Requests/s one replica (one instance) serves within the SLO, stated for these tests:
# a 1B chat model on every single-GPU instance, a 70B model only on the 8-GPU ones.
SMALL = {"L4": 6.0, "A10G": 7.0, "L40S": 14.0, "A100-80GB": 160.0, "H100": 320.0}
LARGE = {"A100-80GB": 12.0, "H100": 30.0}


def _aws_options(spot_cap: int | None = None) -> list[GpuOption]:
    options = []
    for gpu in SMALL:
        for market in ("on-demand", "spot"):
            q = quote(gpu, 1, *REGION, market)
            options.append(
                GpuOption.from_quote(q, max_replicas=spot_cap if market == "spot" else None)
            )
    return options


def _capacity(options: list[GpuOption], table: dict[str, float]) -> dict[str, float]:
    family = {"L4": "L4", "A10G": "A10G", "L40S": "L40S", "A100 80GB SXM": "A100-80GB"}
    family["H100 SXM"] = "H100"
    return {o.key: table[family[o.gpu]] for o in options if family[o.gpu] in table}


def test_options_from_the_public_price_table() -> None:
    options = _aws_options()
    table = price_table()
    for option in options:
        rows = table[
            (table["cloud"] == option.cloud) & (table["instance_type"] == option.instance_type)
        ]
        column = "spot_usd_per_hour" if option.market == "spot" else "on_demand_usd_per_hour"
        assert option.usd_per_hour in set(rows[column])  # a price the table states
    assert {o.instance_type for o in options} >= {"g6.xlarge", "g5.xlarge", "p5.48xlarge"}


def test_low_rate_small_model_lands_on_the_cheapest_gpu_that_serves_it() -> None:
    options = _aws_options()
    chat = Demand("chat-1b", rate_rps=3.0, capacity_rps=_capacity(options, SMALL))
    allocation = solve_allocation([chat], options)
    cheapest = min((o for o in options if o.market == "on-demand"), key=lambda o: o.usd_per_hour)
    assert cheapest.instance_type == "g6.xlarge"
    assert allocation.replicas == {"chat-1b": {cheapest.key: 1}}
    assert allocation.usd_per_hour == pytest.approx(
        quote("L4", 1, *REGION, "on-demand").usd_per_hour
    )


def test_a_large_model_mixes_gpu_types_when_that_is_cheaper() -> None:
    """40 rps of a 70B model: one H100 x8 + one A100-80GB x8 (42 rps) beats two of either."""
    options = [o for o in _aws_options() if o.market == "on-demand"]
    big = Demand("llama-70b", rate_rps=40.0, capacity_rps=_capacity(options, LARGE))
    allocation = solve_allocation([big], options)
    p4de = quote("A100-80GB", 1, *REGION, "on-demand")
    p5 = quote("H100", 1, *REGION, "on-demand")
    assert allocation.replicas["llama-70b"] == {
        GpuOption.from_quote(p4de).key: 1,
        GpuOption.from_quote(p5).key: 1,
    }
    assert allocation.usd_per_hour == pytest.approx(p4de.usd_per_hour + p5.usd_per_hour)
    assert allocation.usd_per_hour < min(2 * p5.usd_per_hour, 4 * p4de.usd_per_hour)


def test_real_prices_equal_brute_force() -> None:
    options = [o for o in _aws_options(spot_cap=2) if o.gpu in {"L4", "A10G", "L40S"}]
    demands = [
        Demand("chat", 20.0, _capacity(options, SMALL), allow_spot=True),
        Demand("rag", 9.5, _capacity(options, SMALL), min_replicas=2),
        Demand("batch", 30.0, _capacity(options, SMALL), allow_spot=True, min_on_demand=0),
    ]
    allocation = solve_allocation(demands, options)
    assert allocation.optimal
    assert _summary(allocation, options) == brute_force(demands, options)
    _check_feasible(allocation, demands, options)


# -- spot, caps, infeasible, zero rate ----------------------------------------------------

OD = GpuOption("l4/on-demand", "L4", 1, "on-demand", 0.80)
SPOT = GpuOption("l4/spot", "L4", 1, "spot", 0.40)
BIG = GpuOption("l40s/on-demand", "L40S", 1, "on-demand", 1.86)
CAP = {OD.key: 5.0, SPOT.key: 5.0, BIG.key: 14.0}


def test_no_spot_unless_allowed() -> None:
    demand = Demand("chat", 18.0, CAP)
    allocation = solve_allocation([demand], [OD, SPOT, BIG])
    assert SPOT.key not in allocation.replicas["chat"]
    assert allocation.replicas["chat"] == {OD.key: 1, BIG.key: 1}  # 19 rps for 2.66


def test_spot_keeps_the_last_on_demand_replica() -> None:
    demand = Demand("chat", 18.0, {OD.key: 5.0, SPOT.key: 5.0}, allow_spot=True)
    assert solve_allocation([demand], [OD, SPOT]).replicas["chat"] == {OD.key: 1, SPOT.key: 3}
    floor_two = Demand("chat", 18.0, {OD.key: 5.0, SPOT.key: 5.0}, allow_spot=True, min_on_demand=2)
    assert solve_allocation([floor_two], [OD, SPOT]).replicas["chat"] == {OD.key: 2, SPOT.key: 2}
    all_spot = Demand("chat", 18.0, {OD.key: 5.0, SPOT.key: 5.0}, allow_spot=True, min_on_demand=0)
    assert solve_allocation([all_spot], [OD, SPOT]).replicas["chat"] == {SPOT.key: 4}


def test_one_replica_deployment_stays_on_demand_rather_than_adding_spot() -> None:
    demand = Demand("chat", 4.0, {OD.key: 5.0, SPOT.key: 5.0}, allow_spot=True)
    assert solve_allocation([demand], [OD, SPOT]).replicas["chat"] == {OD.key: 1}


def test_availability_cap_binds_across_deployments() -> None:
    capped = GpuOption("l4/spot", "L4", 1, "spot", 0.40, max_replicas=3)
    options = [OD, capped]
    demands = [
        Demand(name, 18.0, {OD.key: 5.0, capped.key: 5.0}, allow_spot=True, min_on_demand=0)
        for name in ("a", "b")
    ]
    allocation = solve_allocation(demands, options)
    spot_used = sum(per.get(capped.key, 0) for per in allocation.replicas.values())
    assert spot_used == 3  # uncapped, each would take 4 spot replicas
    assert allocation.usd_per_hour == pytest.approx(3 * 0.40 + 5 * 0.80)
    assert _summary(allocation, options) == brute_force(demands, options)


def test_infeasible_deployments_are_reported_and_the_rest_solved() -> None:
    demands = [
        Demand("fits", 4.0, {OD.key: 5.0}),
        Demand("too-big", 4.0, {}),
        Demand("spot-only", 4.0, {SPOT.key: 5.0}),
        Demand("spot-no-floor", 4.0, {SPOT.key: 5.0}, allow_spot=True),
        Demand("over-max", 40.0, {OD.key: 5.0}, max_replicas=3),
    ]
    allocation = solve_allocation(demands, [OD, SPOT])
    assert allocation.replicas == {"fits": {OD.key: 1}}
    assert allocation.optimal
    reasons = allocation.infeasible
    assert set(reasons) == {"too-big", "spot-only", "spot-no-floor", "over-max"}
    assert "capacity is 0 or missing for all 2 options" in reasons["too-big"]
    assert "allow_spot is False" in reasons["spot-only"]
    assert "min_on_demand=1" in reasons["spot-no-floor"]
    assert "needs 40 rps but at most 15 rps" in reasons["over-max"]


def test_shared_caps_leave_the_fewest_deployments_unserved() -> None:
    scarce = GpuOption("h100/on-demand", "H100", 8, "on-demand", 55.04, max_replicas=2)
    demands = [
        Demand("a", 50.0, {scarce.key: 30.0}),  # needs 2
        Demand("b", 20.0, {scarce.key: 30.0}),  # needs 1
        Demand("c", 20.0, {scarce.key: 30.0}),  # needs 1
    ]
    allocation = solve_allocation(demands, [scarce])
    assert allocation.replicas == {"b": {scarce.key: 1}, "c": {scarce.key: 1}}
    assert list(allocation.infeasible) == ["a"]
    assert "availability caps leave no room" in allocation.infeasible["a"]


def test_zero_rate_gets_min_replicas_of_the_cheapest_option() -> None:
    options = [OD, SPOT, BIG]
    idle = Demand("idle", 0.0, CAP, allow_spot=True)
    assert solve_allocation([idle], options).replicas["idle"] == {OD.key: 1}
    pair = Demand("idle", 0.0, CAP, min_replicas=2)
    assert solve_allocation([pair], options).replicas["idle"] == {OD.key: 2}
    none = Demand("idle", 0.0, CAP, min_replicas=0)
    allocation = solve_allocation([none], options)
    assert allocation.replicas == {"idle": {}}
    assert allocation.usd_per_hour == 0


def test_ties_prefer_fewer_replicas_then_on_demand() -> None:
    small = GpuOption("small", "L4", 1, "on-demand", 1.0)
    large = GpuOption("large", "L40S", 1, "on-demand", 2.0)
    fewer = Demand("d", 2.0, {small.key: 1.0, large.key: 2.0})
    assert solve_allocation([fewer], [small, large]).replicas["d"] == {large.key: 1}
    od = GpuOption("od", "L4", 1, "on-demand", 1.0)
    spot = GpuOption("spot", "L4", 1, "spot", 1.0)
    same = Demand("d", 3.0, {od.key: 1.0, spot.key: 1.0}, allow_spot=True, min_on_demand=0)
    assert solve_allocation([same], [spot, od]).replicas["d"] == {od.key: 3}


def test_compares_with_the_current_allocation() -> None:
    demands = [
        Demand("chat", 18.0, CAP, current={BIG.key: 2}),
        Demand("rag", 4.0, CAP, current={OD.key: 1}),
        Demand("new", 4.0, CAP),
    ]
    allocation = solve_allocation(demands, [OD, SPOT, BIG])
    chat = allocation.deployments["chat"]
    assert chat.current_usd_per_hour == pytest.approx(2 * 1.86)
    assert chat.current_capacity_rps == 28.0
    assert chat.usd_per_hour == pytest.approx(0.80 + 1.86)
    assert chat.capacity_rps == 19.0
    assert allocation.deployments["new"].current_usd_per_hour is None
    assert allocation.current_usd_per_hour == pytest.approx(2 * 1.86 + 0.80)
    assert allocation.savings_usd_per_hour == pytest.approx(2 * 1.86 - (0.80 + 1.86))


# -- input errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Demand("chat", -1.0, CAP), "deployment 'chat': rate_rps must be finite and >= 0"),
        (lambda: Demand("chat", math.nan, CAP), "deployment 'chat': rate_rps"),
        (lambda: Demand("chat", 1.0, {OD.key: math.nan}), "capacity_rps['l4/on-demand']"),
        (lambda: Demand("chat", 1.0, CAP, min_replicas=3, max_replicas=2), "max_replicas=2"),
        (lambda: Demand("chat", 1.0, CAP, current={OD.key: -1}), "current['l4/on-demand']"),
        (lambda: GpuOption("x", "L4", 1, "preemptible", 1.0), "option 'x': market"),
        (lambda: GpuOption("x", "L4", 0, "spot", 1.0), "option 'x': gpu_count must be >= 1"),
        (lambda: GpuOption("x", "L4", 1, "spot", math.inf), "option 'x': usd_per_hour"),
    ],
)
def test_invalid_fields_are_refused_by_name(build, message: str) -> None:
    with pytest.raises(AllocationInputError) as error:
        build()
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("demands", "options", "message"),
    [
        (
            [Demand("chat", 1.0, {"nope": 2.0})],
            [OD],
            "'chat': capacity_rps names unknown option(s) 'nope'",
        ),
        ([Demand("chat", 1.0, CAP, current={"gone": 1})], [OD, SPOT, BIG], "current names unknown"),
        (
            [Demand("chat", 1.0, {}), Demand("chat", 2.0, {})],
            [OD],
            "deployment 'chat' appears twice",
        ),
        ([], [OD, OD], "option key 'l4/on-demand' appears twice"),
    ],
)
def test_inconsistent_inputs_are_refused(demands, options, message: str) -> None:
    with pytest.raises(AllocationInputError) as error:
        solve_allocation(demands, options)
    assert message in str(error.value)


def test_empty_problem() -> None:
    allocation = solve_allocation([], [OD])
    assert (
        allocation.replicas == {} and allocation.usd_per_hour == 0 and allocation.infeasible == {}
    )


def test_solver_settings_are_checked_and_reported() -> None:
    demand = Demand("chat", 4.0, {OD.key: 5.0})
    with pytest.raises(AllocationInputError, match="time_limit_s must be positive"):
        solve_allocation([demand], [OD], time_limit_s=0)
    with pytest.raises(AllocationInputError, match="rel_gap must be in"):
        solve_allocation([demand], [OD], rel_gap=1.5)
    allocation = solve_allocation([demand], [OD], rel_gap=1e-4)
    assert allocation.optimal and allocation.gap is not None and allocation.gap <= 1e-4


def test_option_from_quote_keys_by_cloud_region_type_market() -> None:
    q = quote("L4", 1, *REGION, "spot")
    option = GpuOption.from_quote(q, max_replicas=3)
    assert option.key == "aws/us-east-1/g6.xlarge/spot"
    assert (option.gpu, option.gpu_count, option.market) == ("L4", 1, "spot")
    assert (option.usd_per_hour, option.max_replicas) == (q.usd_per_hour, 3)
