"""Which mix of GPU types and markets serves every deployment at least cost: an integer program.

After Mélange (Griggs et al. 2024, "Cost Efficient LLM Serving by Exploiting GPU
Heterogeneity"): a small GPU is often the cheapest way to serve a low request rate and a
large one the cheapest at a high rate, so the cost-optimal fleet mixes types, and the
mix is a bin-packing choice that an integer program settles exactly where greedy
rules ("the cheapest GPU per request/s") round badly and ignore shared availability.

The caller (the cost agent) computes the inputs from its capacity model: for each
deployment the request rate to serve (with whatever headroom it wants) and, for each
candidate :class:`GpuOption`, how many requests/s one replica serves within the SLO.
This module is pure: no store, no Prefect, no LangGraph. ``docs/allocation.md`` states the
formulation; in short, with ``x[d,o]`` replicas of option ``o`` for deployment ``d``:

    minimise    sum price[o] * x[d,o]
    subject to  sum_o capacity[d,o] * x[d,o] >= rate[d]              (serve the rate)
                min_replicas[d] <= sum_o x[d,o] <= max_replicas[d]
                spot x[d,o] = 0 unless allow_spot[d]
                non-spot replicas of d >= min_on_demand[d] when d uses any spot
                sum_d x[d,o] <= max_replicas[o]                       (availability)
                x integer >= 0

Cost ties are broken towards the fewest replicas, then the fewest spot replicas, by a
weight of 1e-6 USD/h per replica in the objective (``TIE_BREAK_USD_PER_HOUR``). A
deployment that cannot be served (no option fits it, or caps leave no room) is reported
in :attr:`Allocation.infeasible` with the reason, and the others are still solved.

Example::

    >>> l4 = GpuOption("aws/us-east-1/g6.xlarge/on-demand", "L4", 1, "on-demand", 0.8048)
    >>> a10 = GpuOption("aws/us-east-1/g5.xlarge/on-demand", "A10G", 1, "on-demand", 1.006)
    >>> chat = Demand("chat", rate_rps=5.0, capacity_rps={l4.key: 2.0, a10.key: 2.6})
    >>> solve_allocation([chat], [l4, a10]).replicas
    {'chat': {'aws/us-east-1/g5.xlarge/on-demand': 2}}
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

if TYPE_CHECKING:
    from optiinfra.catalog.prices import PriceQuote

MARKETS = ("on-demand", "spot", "reserved")
#: A deployment is served when its replicas give at least ``rate * (1 - FEASIBILITY_RTOL)``:
#: float capacities that add up to the rate exactly must not count as a shortfall.
FEASIBILITY_RTOL = 1e-9
#: Stand-in bound for a variable with no cap, only in models that ask "how much fits".
_UNCAPPED = 10**6
#: What one replica adds to the objective to break cost ties towards fewer replicas. The
#: cost found is within 2 x this x replicas of the least (about $0.02 a year per replica).
TIE_BREAK_USD_PER_HOUR = 1e-6
_OBJECTIVE_SCALE = 1e6  # USD -> micro-USD: see _Model.solve_cost


class AllocationInputError(ValueError):
    """An input the allocator refuses, naming the deployment or option and the field."""


@dataclass(frozen=True)
class GpuOption:
    """One way to run a replica: a GPU type x count in one market, cloud and region.

    ``usd_per_hour`` is per replica (the whole instance when a replica is one instance);
    ``max_replicas`` caps how many replicas of this option all deployments together may
    use (spot pools and scarce GPUs run out); None means no cap. ``cloud``, ``region`` and
    ``instance_type`` are descriptive: the solver only reads the key, market and price.
    """

    key: str
    gpu: str
    gpu_count: int
    market: str
    usd_per_hour: float
    max_replicas: int | None = None
    cloud: str = ""
    region: str = ""
    instance_type: str = ""

    def __post_init__(self) -> None:
        where = f"option {self.key!r}"
        if not isinstance(self.key, str) or not self.key.strip():
            raise AllocationInputError(f"option key must be a non-empty string, got {self.key!r}")
        if self.market not in MARKETS:
            raise AllocationInputError(
                f"{where}: market {self.market!r} is not one of {', '.join(MARKETS)}"
            )
        _check_count(self.gpu_count, f"{where}: gpu_count", minimum=1)
        _check_number(self.usd_per_hour, f"{where}: usd_per_hour")
        if self.max_replicas is not None:
            _check_count(self.max_replicas, f"{where}: max_replicas", minimum=0)

    @property
    def is_spot(self) -> bool:
        """Spot replicas can be reclaimed at any time; on-demand and reserved ones stay."""
        return self.market == "spot"

    @classmethod
    def from_quote(cls, quote: PriceQuote, *, max_replicas: int | None = None) -> GpuOption:
        """An option for one replica per quoted instance, keyed ``cloud/region/type/market``."""
        return cls(
            key=f"{quote.cloud}/{quote.region}/{quote.instance_type}/{quote.market}",
            gpu=quote.gpu,
            gpu_count=quote.gpu_count,
            market=quote.market,
            usd_per_hour=quote.usd_per_hour,
            max_replicas=max_replicas,
            cloud=quote.cloud,
            region=quote.region,
            instance_type=quote.instance_type,
        )


@dataclass(frozen=True)
class Demand:
    """What one deployment needs, as the capacity model sees it.

    ``capacity_rps[key]`` is how many requests/s one replica of that option serves within
    the SLO; 0 or a missing key means it cannot serve (the model does not fit, or the SLO
    is out of reach). ``min_on_demand`` is the floor of on-demand or reserved replicas a
    deployment keeps whenever it uses spot, so a spot reclaim never takes it to zero; 0
    lets a deployment that tolerates it run all-spot. ``current`` is today's allocation
    (option key -> replicas), priced for comparison only.
    """

    deployment: str
    rate_rps: float
    capacity_rps: Mapping[str, float]
    min_replicas: int = 1
    min_on_demand: int = 1
    allow_spot: bool = False
    max_replicas: int | None = None
    current: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.deployment, str) or not self.deployment.strip():
            raise AllocationInputError(
                f"deployment name must be a non-empty string, got {self.deployment!r}"
            )
        where = f"deployment {self.deployment!r}"
        _check_number(self.rate_rps, f"{where}: rate_rps")
        for key, value in self.capacity_rps.items():
            _check_number(value, f"{where}: capacity_rps[{key!r}]")
        _check_count(self.min_replicas, f"{where}: min_replicas", minimum=0)
        _check_count(self.min_on_demand, f"{where}: min_on_demand", minimum=0)
        if self.max_replicas is not None:
            _check_count(self.max_replicas, f"{where}: max_replicas", minimum=0)
            if self.max_replicas < self.min_replicas:
                raise AllocationInputError(
                    f"{where}: max_replicas={self.max_replicas} is below "
                    f"min_replicas={self.min_replicas}"
                )
        for key, count in self.current.items():
            _check_count(count, f"{where}: current[{key!r}]", minimum=0)


@dataclass(frozen=True)
class DeploymentAllocation:
    """One served deployment: its replicas, their cost and capacity, and today's."""

    deployment: str
    replicas: dict[str, int]
    usd_per_hour: float
    rate_rps: float
    capacity_rps: float
    current_usd_per_hour: float | None
    current_capacity_rps: float | None  # below rate_rps when today's allocation falls short


@dataclass(frozen=True)
class Allocation:
    """The cheapest allocation found, and how it compares with the current one.

    ``replicas`` holds every served deployment (an empty dict when it needs none);
    ``infeasible`` maps each deployment left unserved to the reason. ``optimal`` says the
    least cost was proven (else ``status`` says why not, e.g. the time limit).
    ``current_usd_per_hour`` prices ``Demand.current`` of the served deployments that
    state one (None when none does); ``usd_per_hour`` is NaN when no allocation was found.
    """

    replicas: dict[str, dict[str, int]]
    usd_per_hour: float
    current_usd_per_hour: float | None
    status: str
    optimal: bool
    solve_seconds: float
    infeasible: dict[str, str]
    deployments: dict[str, DeploymentAllocation] = field(default_factory=dict)
    gap: float | None = None  # relative gap HiGHS proved: 0 when optimal, None if unknown

    @property
    def savings_usd_per_hour(self) -> float | None:
        """Current minus new cost over the served deployments that state a current one."""
        pairs = [
            (d.current_usd_per_hour, d.usd_per_hour)
            for d in self.deployments.values()
            if d.current_usd_per_hour is not None
        ]
        return sum(now - new for now, new in pairs) if pairs else None


def solve_allocation(
    demands: Sequence[Demand],
    options: Sequence[GpuOption],
    *,
    time_limit_s: float = 10.0,
    rel_gap: float = 0.0,
) -> Allocation:
    """The least-cost integer allocation of ``options`` to ``demands`` (HiGHS via scipy).

    Raises :class:`AllocationInputError` for inconsistent inputs (duplicate names, a
    capacity or current allocation naming an unknown option). ``time_limit_s`` bounds the
    whole solve; when it runs out the best allocation found is returned with
    ``optimal=False`` and the gap HiGHS proved (``Allocation.gap``). ``rel_gap`` > 0 lets
    HiGHS stop at an allocation proven within that fraction of the least cost (then
    ``optimal`` means "within rel_gap", and ties may be broken less strictly): 0 by
    default, for exact answers on fleets of tens of deployments; 1e-4 suits hundreds.
    """
    started = time.perf_counter()
    by_key = _check_inputs(demands, options)
    if not math.isfinite(time_limit_s) or time_limit_s <= 0:
        raise AllocationInputError(f"time_limit_s must be positive, got {time_limit_s!r}")
    if not 0 <= rel_gap < 1:
        raise AllocationInputError(f"rel_gap must be in [0, 1), got {rel_gap!r}")
    infeasible: dict[str, str] = {}
    solvable: list[Demand] = []
    for demand in demands:
        reason = _structural_reason(demand, options)
        if reason:
            infeasible[demand.deployment] = reason
        else:
            solvable.append(demand)
    model = _Model(solvable, options, rel_gap=rel_gap)

    def remaining() -> float:
        return max(time_limit_s - (time.perf_counter() - started), 1e-3)

    result = model.solve_cost(remaining(), max_dropped=0)
    dropped: list[Demand] = []
    if result.status == 2:  # infeasible together: leave the fewest deployments unserved
        drop = model.solve_drops(remaining())
        if drop.x is None:
            return _unsolved(started, infeasible, drop.message)
        max_dropped = round(float(drop.fun))
        result = model.solve_cost(remaining(), max_dropped=max_dropped)
        if result.x is not None:
            dropped = model.dropped(result.x)
            for demand in dropped:
                infeasible[demand.deployment] = model.drop_reason(demand, remaining())
    infeasible = {
        d.deployment: infeasible[d.deployment] for d in demands if d.deployment in infeasible
    }
    if result.x is None:
        return _unsolved(started, infeasible, result.message)
    optimal = result.status == 0
    status = "optimal" if optimal else f"not proven optimal: {result.message}"
    x = model.rounded(result.x)
    allocation = _allocation(model, x, by_key, dropped, infeasible, status, optimal, started)
    return replace(allocation, gap=result.gap)


# -- the model ---------------------------------------------------------------------------


class _Model:
    """Variables and rows of the integer program, shared by its objectives.

    Columns: one ``x`` per (deployment, usable option), then a binary ``y`` per deployment
    that may use spot under an on-demand floor ("uses spot"), then a binary ``z`` per
    deployment ("left unserved"), fixed to 0 unless caps make the whole problem infeasible.
    """

    def __init__(
        self,
        demands: list[Demand],
        options: Sequence[GpuOption],
        *,
        caps_only: bool = False,
        rel_gap: float = 0.0,
    ) -> None:
        self.demands = demands
        self.options = options
        self.rel_gap = rel_gap
        self.bounded = True  # False when caps_only and some x has no cap
        dep: list[int] = []
        opt: list[int] = []
        upper: list[int] = []
        for d, demand in enumerate(demands):
            for o, option in enumerate(options):
                bound = _useful_replicas(demand, option, options, caps_only=caps_only)
                if bound is None:
                    self.bounded = False
                    bound = _UNCAPPED
                if bound > 0:
                    dep.append(d)
                    opt.append(o)
                    upper.append(bound)
        self.dep = np.array(dep, dtype=int)
        self.opt = np.array(opt, dtype=int)
        self.n_x = len(dep)
        self.price = np.array([options[o].usd_per_hour for o in opt], dtype=float)
        self.spot = np.array([options[o].is_spot for o in opt], dtype=bool)
        self.capacity = np.array(
            [
                demands[d].capacity_rps.get(options[o].key, 0.0)
                for d, o in zip(dep, opt, strict=True)
            ],
            dtype=float,
        )
        floors = [
            d
            for d, demand in enumerate(demands)
            if demand.min_on_demand > 0 and self.spot[self.dep == d].any()
        ]
        self.y_of = {d: self.n_x + i for i, d in enumerate(floors)}
        self.z0 = self.n_x + len(floors)
        self.n = self.z0 + len(demands)
        self.upper = np.concatenate([np.array(upper, dtype=float), np.ones(self.n - self.n_x)])
        self.rows = _Rows(self.n)
        self._add_rows()

    def _add_rows(self) -> None:
        rows = self.rows
        for d, demand in enumerate(self.demands):
            cols = np.flatnonzero(self.dep == d)
            z = self.z0 + d
            if demand.rate_rps > 0:  # sum cap/rate * x + z >= 1 - rtol (relative: well scaled)
                coefs = self.capacity[cols] / demand.rate_rps
                rows.add([*cols, z], [*coefs, 1.0], 1.0 - FEASIBILITY_RTOL, np.inf)
            if demand.min_replicas > 0:
                ones = [1.0] * len(cols)
                rows.add([*cols, z], [*ones, float(demand.min_replicas)], demand.min_replicas)
            most = float(self.upper[cols].sum())
            if demand.max_replicas is not None:
                most = min(most, float(demand.max_replicas))
            rows.add([*cols, z], [1.0] * len(cols) + [most], -np.inf, most)  # z=1: nothing
            if d in self.y_of:
                y = self.y_of[d]
                spot, stay = cols[self.spot[cols]], cols[~self.spot[cols]]
                big = float(self.upper[spot].sum())
                rows.add([*spot, y], [1.0] * len(spot) + [-big], -np.inf, 0.0)
                floor = float(demand.min_on_demand)
                rows.add([*stay, y], [1.0] * len(stay) + [-floor], 0.0, np.inf)
        for o, option in enumerate(self.options):
            cols = np.flatnonzero(self.opt == o)
            if option.max_replicas is not None and len(cols) > 1:
                rows.add(cols, [1.0] * len(cols), -np.inf, option.max_replicas)

    def _solve(
        self,
        objective: np.ndarray,
        time_limit: float,
        max_dropped: int | None,
    ) -> _Result:
        upper = self.upper.copy()
        if max_dropped == 0:
            upper[self.z0 :] = 0.0
        constraints = [self.rows.constraint()]
        if max_dropped:
            drops = np.zeros(self.n)
            drops[self.z0 :] = 1.0
            constraints.append(LinearConstraint(drops[None, :], -np.inf, max_dropped))
        if self.n == 0:
            return _Result(np.zeros(0), 0.0, 0, "nothing to solve", 0.0)
        found = milp(
            objective,
            integrality=np.ones(self.n),
            bounds=Bounds(np.zeros(self.n), upper),
            constraints=constraints,
            options={"time_limit": time_limit, "mip_rel_gap": self.rel_gap},
        )
        gap = getattr(found, "mip_gap", None)
        return _Result(found.x, found.fun, found.status, found.message, gap)

    def solve_cost(self, time_limit: float, *, max_dropped: int | None) -> _Result:
        """Least cost, ties broken towards fewer replicas, then fewer spot replicas.

        Each replica adds ``TIE_BREAK_USD_PER_HOUR`` and each spot replica a further
        ``1 / (spot bound + 1)`` of that, so one replica fewer outweighs any change in
        spot replicas. The objective is in micro-dollars per hour so that HiGHS's absolute
        gap (1e-6) stays far below one tie-break step.
        """
        spot_step = 1.0 / (float(self.upper[: self.n_x][self.spot].sum()) + 1.0)
        tie = TIE_BREAK_USD_PER_HOUR * (1.0 + spot_step * self.spot)
        objective = self._x_vector(self.price + tie) * _OBJECTIVE_SCALE
        return self._solve(objective, time_limit, max_dropped)

    def solve_drops(self, time_limit: float) -> _Result:
        objective = np.zeros(self.n)
        objective[self.z0 :] = 1.0
        return self._solve(objective, time_limit, None)

    def _x_vector(self, values: np.ndarray) -> np.ndarray:
        vector = np.zeros(self.n)
        vector[: self.n_x] = values
        return vector

    def rounded(self, solution: np.ndarray) -> np.ndarray:
        return np.rint(solution).astype(int)

    def dropped(self, solution: np.ndarray) -> list[Demand]:
        z = self.rounded(solution)[self.z0 :]
        return [demand for demand, gone in zip(self.demands, z, strict=True) if gone]

    def drop_reason(self, demand: Demand, time_limit: float) -> str:
        """Why a deployment left unserved is: alone it cannot be served, or caps are shared."""
        alone = _Model([demand], self.options)
        if alone.solve_cost(time_limit, max_dropped=0).status != 2:
            capped = sorted(
                option.key
                for option in self.options
                if option.max_replicas is not None and demand.capacity_rps.get(option.key, 0.0) > 0
            )
            return (
                "availability caps leave no room for it beside the other deployments "
                f"(capped options it could use: {', '.join(capped)})"
            )
        return _alone_reason(demand, self.options, time_limit)


class _Rows:
    """Sparse constraint rows, gathered one at a time and handed to HiGHS in one matrix."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.r: list[int] = []
        self.c: list[int] = []
        self.v: list[float] = []
        self.lb: list[float] = []
        self.ub: list[float] = []

    def add(
        self,
        cols: Sequence[int] | np.ndarray,
        coefs: Sequence[float],
        lb: float,
        ub: float = np.inf,
    ) -> None:
        row = len(self.lb)
        self.r.extend([row] * len(cols))
        self.c.extend(int(c) for c in cols)
        self.v.extend(float(v) for v in coefs)
        self.lb.append(float(lb))
        self.ub.append(float(ub))

    def constraint(self) -> LinearConstraint:
        shape = (max(len(self.lb), 1), self.n)
        if not self.lb:
            return LinearConstraint(coo_array(shape).tocsr(), -np.inf, np.inf)
        matrix = coo_array((self.v, (self.r, self.c)), shape=shape).tocsr()
        return LinearConstraint(matrix, self.lb, self.ub)


@dataclass(frozen=True)
class _Result:
    x: np.ndarray | None
    fun: float | None
    status: int
    message: str
    gap: float | None


# -- helpers -----------------------------------------------------------------------------


def _useful_replicas(
    demand: Demand, option: GpuOption, options: Sequence[GpuOption], *, caps_only: bool = False
) -> int | None:
    """An upper bound on replicas of ``option`` that some least-cost allocation respects.

    0 when the option cannot serve the deployment. Otherwise, past
    ``max(ceil(rate / capacity), min_replicas, min_on_demand)`` replicas one fewer still
    serves the rate and keeps every floor, so dropping it never costs more: the bound
    only tightens the model, it never cuts off the optimum. ``caps_only`` bounds by the
    caps alone (None when there are none), for asking how much could fit at most.
    """
    capacity = demand.capacity_rps.get(option.key, 0.0)
    if capacity <= 0 or (option.is_spot and not _spot_usable(demand, options)):
        return 0
    bound: int | None = None
    if not caps_only:
        bound = max(math.ceil(demand.rate_rps / capacity), demand.min_replicas)
        if not option.is_spot:
            bound = max(bound, demand.min_on_demand)
    for cap in (option.max_replicas, demand.max_replicas):
        if cap is not None:
            bound = cap if bound is None else min(bound, cap)
    return bound


def _spot_usable(demand: Demand, options: Sequence[GpuOption]) -> bool:
    """Spot needs permission, and an on-demand/reserved option to keep the floor on."""
    if not demand.allow_spot:
        return False
    return demand.min_on_demand == 0 or any(
        not o.is_spot and demand.capacity_rps.get(o.key, 0.0) > 0 for o in options
    )


def _structural_reason(demand: Demand, options: Sequence[GpuOption]) -> str:
    """Why no option can serve a deployment, seen without solving ('' when some can)."""
    if demand.rate_rps == 0 and demand.min_replicas == 0:
        return ""
    serving = [o for o in options if demand.capacity_rps.get(o.key, 0.0) > 0]
    if not serving:
        return f"no option can serve it: capacity is 0 or missing for all {len(options)} options"
    if any(_useful_replicas(demand, o, options) > 0 for o in serving):
        return ""
    if all(o.is_spot for o in serving):
        if not demand.allow_spot:
            return (
                f"only spot options can serve it ({', '.join(o.key for o in serving)}) "
                "and allow_spot is False"
            )
        return (
            f"only spot options can serve it, and min_on_demand={demand.min_on_demand} "
            "needs an on-demand or reserved option that can serve it too"
        )
    return "every option that can serve it has max_replicas=0 (here or on the option)"


def _alone_reason(demand: Demand, options: Sequence[GpuOption], time_limit: float) -> str:
    """Why a deployment cannot be served even alone: its rate, or its replica floor."""
    relaxed = replace(demand, rate_rps=0.0, min_replicas=0, current={})
    most = _Model([relaxed], options, caps_only=True)
    limits = ", ".join(
        [f"max_replicas={demand.max_replicas}"] * (demand.max_replicas is not None)
        + [
            f"{o.key} max_replicas={o.max_replicas}"
            for o in options
            if o.max_replicas is not None and demand.capacity_rps.get(o.key, 0.0) > 0
        ]
    )
    if most.bounded:
        best = most._solve(-most._x_vector(most.capacity), time_limit, 0)
        if best.fun is not None and -best.fun < demand.rate_rps * (1 - FEASIBILITY_RTOL):
            return (
                f"needs {demand.rate_rps:g} rps but at most {-best.fun:g} rps fit within {limits}"
            )
        count = most._solve(-most._x_vector(np.ones(most.n_x)), time_limit, 0)
        if count.fun is not None and -count.fun < demand.min_replicas:
            return (
                f"needs min_replicas={demand.min_replicas} but at most {-count.fun:g} "
                f"replicas fit within {limits}"
            )
    return (
        f"min_replicas={demand.min_replicas}, min_on_demand={demand.min_on_demand} and "
        f"the caps ({limits or 'none'}) cannot all hold at its rate of {demand.rate_rps:g} rps"
    )


def _allocation(
    model: _Model,
    x: np.ndarray,
    by_key: Mapping[str, GpuOption],
    dropped: list[Demand],
    infeasible: dict[str, str],
    status: str,
    optimal: bool,
    started: float,
) -> Allocation:
    served: dict[str, DeploymentAllocation] = {}
    gone = {demand.deployment for demand in dropped}
    for d, demand in enumerate(model.demands):
        if demand.deployment in gone:
            continue
        cols = np.flatnonzero((model.dep == d) & (x[: model.n_x] > 0))
        replicas = {model.options[model.opt[c]].key: int(x[c]) for c in cols}
        current = dict(demand.current)
        served[demand.deployment] = DeploymentAllocation(
            deployment=demand.deployment,
            replicas=replicas,
            usd_per_hour=float(model.price[cols] @ x[cols]),
            rate_rps=demand.rate_rps,
            capacity_rps=float(model.capacity[cols] @ x[cols]),
            current_usd_per_hour=(
                sum(n * by_key[k].usd_per_hour for k, n in current.items()) if current else None
            ),
            current_capacity_rps=(
                sum(n * demand.capacity_rps.get(k, 0.0) for k, n in current.items())
                if current
                else None
            ),
        )
    currents = [
        d.current_usd_per_hour for d in served.values() if d.current_usd_per_hour is not None
    ]
    return Allocation(
        replicas={name: dict(d.replicas) for name, d in served.items()},
        usd_per_hour=sum(d.usd_per_hour for d in served.values()),
        current_usd_per_hour=sum(currents) if currents else None,
        status=status,
        optimal=optimal,
        solve_seconds=time.perf_counter() - started,
        infeasible=infeasible,
        deployments=served,
    )


def _unsolved(started: float, infeasible: dict[str, str], message: str) -> Allocation:
    return Allocation(
        replicas={},
        usd_per_hour=math.nan,
        current_usd_per_hour=None,
        status=f"no allocation found: {message}",
        optimal=False,
        solve_seconds=time.perf_counter() - started,
        infeasible=infeasible,
    )


def _check_number(value: float, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AllocationInputError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise AllocationInputError(f"{where} must be finite and >= 0, got {value!r}")


def _check_count(value: int, where: str, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise AllocationInputError(f"{where} must be an integer, got {value!r}")
    if value < minimum:
        raise AllocationInputError(f"{where} must be >= {minimum}, got {value!r}")


def _check_inputs(demands: Sequence[Demand], options: Sequence[GpuOption]) -> dict[str, GpuOption]:
    by_key: dict[str, GpuOption] = {}
    for option in options:
        if option.key in by_key:
            raise AllocationInputError(f"option key {option.key!r} appears twice")
        by_key[option.key] = option
    seen: set[str] = set()
    for demand in demands:
        where = f"deployment {demand.deployment!r}"
        if demand.deployment in seen:
            raise AllocationInputError(f"{where} appears twice")
        seen.add(demand.deployment)
        for field_name, keys in (
            ("capacity_rps", demand.capacity_rps),
            ("current", demand.current),
        ):
            unknown = sorted(set(keys) - set(by_key))
            if unknown:
                raise AllocationInputError(
                    f"{where}: {field_name} names unknown option(s) {', '.join(map(repr, unknown))}"
                )
    return by_key
