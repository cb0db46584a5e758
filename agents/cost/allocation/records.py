"""The allocation program's inputs and outputs, and their checks."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

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
