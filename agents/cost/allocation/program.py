"""The integer program itself: variables, rows, and the two-stage solve."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from agents.cost.allocation.records import (
    _OBJECTIVE_SCALE,
    _UNCAPPED,
    FEASIBILITY_RTOL,
    TIE_BREAK_USD_PER_HOUR,
    Demand,
    GpuOption,
)

if TYPE_CHECKING:
    pass


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
