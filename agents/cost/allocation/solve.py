"""solve_allocation: check, solve, explain what could not be served."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from agents.cost.allocation.program import _Model, _structural_reason
from agents.cost.allocation.records import (
    Allocation,
    AllocationInputError,
    Demand,
    DeploymentAllocation,
    GpuOption,
    _check_inputs,
)

if TYPE_CHECKING:
    pass


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
