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

from agents.cost.allocation.records import (
    FEASIBILITY_RTOL,
    MARKETS,
    TIE_BREAK_USD_PER_HOUR,
    Allocation,
    AllocationInputError,
    Demand,
    DeploymentAllocation,
    GpuOption,
)
from agents.cost.allocation.solve import solve_allocation

__all__ = [
    "FEASIBILITY_RTOL",
    "MARKETS",
    "TIE_BREAK_USD_PER_HOUR",
    "Allocation",
    "AllocationInputError",
    "Demand",
    "DeploymentAllocation",
    "GpuOption",
    "solve_allocation",
]
