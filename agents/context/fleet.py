"""The :class:`FleetContext`: inventory, per-deployment statistics, targets, policy.

Deployments are read from the inventory (the newest row of every instance seen in the
window): an instance's deployment, model, engine, cloud, stateless flag and engine
arguments are inventory labels (``deployment``, ``model``, ``engine``, ``cloud``,
``stateless``, ``engine_args``), which adapters fill where they know them. An instance
without a ``deployment`` label is its own deployment.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from agents.context.stats import DEPLOYMENT_STATS_COLUMNS, deployment_stats
from optiinfra.config import OptiInfraConfig
from optiinfra.config.schema import SLO, Policy

#: Columns of :attr:`FleetContext.deployments`.
DEPLOYMENT_COLUMNS = [
    "tenant",
    "provider",
    "deployment",
    "model",
    "engine",
    "cloud",
    "region",
    "gpu",
    "gpu_count",
    "replicas",
    "running",
    "on_demand",
    "spot",
    "reserved",
    "usd_per_hour",
    "price_per_replica",
    "on_demand_price",
    "stateless",
    "engine_args",
    "instance_type",
    "instances",
    "mixed_hardware",
]

#: Columns of the inventory frame :meth:`FleetContext.from_frames` accepts.
INVENTORY_COLUMNS = [
    "tenant",
    "provider",
    "instance",
    "region",
    "instance_type",
    "gpu_model",
    "gpu_count",
    "market",
    "price_usd_per_hour",
    "state",
    "labels",
    "last_seen",
]


@dataclass(frozen=True)
class Targets:
    """The latency and error targets that apply to one deployment (None = not set)."""

    ttft_p95_s: float | None = None
    itl_p95_s: float | None = None
    e2e_p95_s: float | None = None
    max_error_rate: float | None = None
    #: Which configured SLO entries they came from ("tenant/deployment"), for evidence.
    sources: tuple[str, ...] = ()
    #: Targets filled in from defaults rather than configured ("ttft_p95_s", …).
    assumed: tuple[str, ...] = ()

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.ttft_p95_s, self.itl_p95_s, self.e2e_p95_s))


def _labels(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value:
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _engine_args(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    parsed = _labels(value)
    return parsed


def _truthy(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"true", "1", "yes"}


def _median(values: Iterable[float]) -> float:
    known = list(values)
    return float(pd.Series(known).median()) if known else float("nan")


def normal_market(value: Any) -> str:
    """``on_demand`` (the store's enum), ``on-demand``, ``OnDemand`` → ``on-demand``."""
    text = str(value or "").strip().lower().replace("_", "-")
    return "on-demand" if text in ("on-demand", "ondemand", "") else text


def deployments_from_inventory(inventory: pd.DataFrame) -> pd.DataFrame:
    """One row per (tenant, provider, deployment) from the newest inventory rows."""
    if inventory.empty:
        return pd.DataFrame(columns=DEPLOYMENT_COLUMNS)
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in inventory.itertuples(index=False):
        labels = _labels(item.labels)
        name = str(labels.get("deployment") or item.instance)
        key = (str(item.tenant), str(item.provider), name)
        row = rows.setdefault(
            key,
            {
                "tenant": key[0],
                "provider": key[1],
                "deployment": name,
                "model": str(labels.get("model", "")),
                "engine": str(labels.get("engine", "")),
                "cloud": str(labels.get("cloud", "")),
                "region": str(item.region),
                "stateless": _truthy(labels.get("stateless")),
                "engine_args": _engine_args(labels.get("engine_args")),
                "instances": [],
                "gpus": [],
                "prices": [],
                "markets": [],
                "states": [],
                "types": [],
            },
        )
        row["instances"].append(str(item.instance))
        row["gpus"].append((str(item.gpu_model), int(item.gpu_count or 0)))
        price = item.price_usd_per_hour
        row["prices"].append(float(price) if price is not None and pd.notna(price) else None)
        row["markets"].append(normal_market(item.market))
        row["states"].append(str(item.state))
        row["types"].append(str(item.instance_type))
    out = []
    for row in rows.values():
        gpus = pd.Series([f"{g}\x00{c}" for g, c in row["gpus"]]).value_counts()
        gpu, count = gpus.index[0].split("\x00")
        known = [p for p in row["prices"] if p is not None]
        markets = pd.Series(row["markets"])
        out.append(
            {
                **{k: row[k] for k in ("tenant", "provider", "deployment", "model", "engine")},
                "cloud": row["cloud"],
                "region": row["region"],
                "gpu": gpu,
                "gpu_count": int(count),
                "replicas": len(row["instances"]),
                "running": sum(s == "running" for s in row["states"]),
                "on_demand": int((markets == "on-demand").sum()),
                "spot": int((markets == "spot").sum()),
                "reserved": int((markets == "reserved").sum()),
                "usd_per_hour": sum(known) if known else float("nan"),
                "price_per_replica": float(pd.Series(known).median()) if known else float("nan"),
                "on_demand_price": _median(
                    p
                    for p, m in zip(row["prices"], row["markets"], strict=True)
                    if p is not None and m == "on-demand"
                ),
                "stateless": row["stateless"],
                "engine_args": row["engine_args"],
                "instance_type": pd.Series(row["types"]).mode().iloc[0],
                "instances": sorted(row["instances"]),
                "mixed_hardware": len(gpus) > 1,
            }
        )
    return pd.DataFrame(out, columns=DEPLOYMENT_COLUMNS)


@dataclass
class FleetContext:
    """Everything an agent reads, loaded once per optimize run."""

    now: datetime
    window_seconds: float
    #: Newest inventory row per instance seen in the window (:data:`INVENTORY_COLUMNS`).
    inventory: pd.DataFrame
    #: One row per deployment (:data:`DEPLOYMENT_COLUMNS`).
    deployments: pd.DataFrame
    #: Per-series window statistics (see :mod:`agents.context.stats`).
    recent: pd.DataFrame
    #: One row per deployment (:data:`~agents.context.stats.DEPLOYMENT_STATS_COLUMNS`).
    stats: pd.DataFrame
    #: Running instances per hour over the history window, for commitments:
    #: tenant, provider, cloud, region, gpu, gpu_count, market, hour, instances.
    fleet_hours: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Per deployment and hour over the history window: request_rate (summed over
    #: instances), instances, and running_mean / waiting_mean (requests running and
    #: waiting per replica; NaN in hours without engine gauges). Resource agent; may be
    #: empty.
    hourly: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Quality events of the window (application agent; may be empty).
    quality: pd.DataFrame = field(default_factory=pd.DataFrame)
    slos: list[SLO] = field(default_factory=list)
    policies: list[Policy] = field(default_factory=list)
    #: Provider name -> provider kind (``aws``, ``gcp``, ``sandbox`` …), for the cloud.
    provider_kinds: dict[str, str] = field(default_factory=dict)
    #: Notes about data that was missing or ignored, shown in the optimize artifact.
    notes: list[str] = field(default_factory=list)
    #: Per-run memo for derived objects (e.g. a deployment's calibrated capacity model),
    #: shared by the agents and the coordinator's assessments of one run.
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_frames(
        cls,
        *,
        now: datetime,
        window_seconds: float,
        inventory: pd.DataFrame,
        recent: pd.DataFrame,
        fleet_hours: pd.DataFrame | None = None,
        hourly: pd.DataFrame | None = None,
        quality: pd.DataFrame | None = None,
        config: OptiInfraConfig | None = None,
    ) -> FleetContext:
        """Build a context from frames (tests, benchmarks, and :func:`load_context`)."""
        deployments = deployments_from_inventory(inventory)
        stats = (
            deployment_stats(recent)
            if not recent.empty
            else pd.DataFrame(columns=DEPLOYMENT_STATS_COLUMNS)
        )
        notes = _orphans(deployments, stats)
        return cls(
            now=now,
            window_seconds=window_seconds,
            inventory=inventory,
            deployments=deployments,
            recent=recent,
            stats=stats,
            fleet_hours=fleet_hours if fleet_hours is not None else pd.DataFrame(),
            hourly=hourly if hourly is not None else pd.DataFrame(),
            quality=quality if quality is not None else pd.DataFrame(),
            slos=list(config.slos) if config else [],
            policies=list(config.policies) if config else [],
            provider_kinds={p.name: p.kind for p in config.providers} if config else {},
            notes=notes,
        )

    # -- lookups ---------------------------------------------------------------------

    def deployment_rows(self) -> Iterable[tuple[dict[str, Any], dict[str, Any] | None]]:
        """(inventory row, stats row or None) for each deployment, in a stable order."""
        stats = {
            (r["tenant"], r["provider"], r["deployment"]): r for r in self.stats.to_dict("records")
        }
        for row in self.deployments.sort_values(["tenant", "provider", "deployment"]).to_dict(
            "records"
        ):
            yield row, stats.get((row["tenant"], row["provider"], row["deployment"]))

    def peak_request_rate(self, deployment: Mapping[str, Any], days: float = 7.0) -> float:
        """The busiest hour's mean request rate (summed over replicas) in the last
        ``days`` of hourly history; NaN when there is none.

        Sizing a deployment on the recent window alone would size a daily cycle for
        whatever hour the run happens at: a fleet sized at night misses its afternoon.
        """
        hourly = self.hourly
        if hourly.empty:
            return math.nan
        since = pd.Timestamp(self.now) - pd.Timedelta(days=days)
        rows = hourly[
            (hourly["tenant"] == deployment["tenant"])
            & (hourly["provider"] == deployment["provider"])
            & (hourly["deployment"] == deployment["deployment"])
            & (pd.to_datetime(hourly["hour"], utc=True) >= since)
        ]
        rates = pd.to_numeric(rows["request_rate"], errors="coerce").dropna()
        return float(rates.max()) if len(rates) else math.nan

    def cloud_of(self, deployment: Mapping[str, Any]) -> str:
        """The cloud a deployment runs on: its ``cloud`` label, else its provider's kind."""
        return str(deployment.get("cloud") or self.provider_kinds.get(deployment["provider"], ""))

    def targets(self, tenant: str, deployment: str) -> Targets:
        """SLO targets for a deployment: its own entry over the tenant's ``*`` entry."""
        chosen: dict[str, float] = {}
        sources: list[str] = []
        ranked = sorted(
            (s for s in self.slos if s.tenant == tenant and s.deployment in ("*", deployment)),
            key=lambda s: s.deployment != "*",  # '*' first, the specific entry overrides
        )
        for slo in ranked:
            sources.append(f"{slo.tenant}/{slo.deployment}")
            for name in (
                "ttft_p95_seconds",
                "itl_p95_seconds",
                "e2e_p95_seconds",
                "max_error_rate",
            ):
                value = getattr(slo, name)
                if value is not None:
                    chosen[name] = value
        return Targets(
            ttft_p95_s=chosen.get("ttft_p95_seconds"),
            itl_p95_s=chosen.get("itl_p95_seconds"),
            e2e_p95_s=chosen.get("e2e_p95_seconds"),
            max_error_rate=chosen.get("max_error_rate"),
            sources=tuple(sources),
        )

    def policy(self, tenant: str) -> Policy:
        """The tenant's policy (the defaults when none is configured)."""
        for policy in self.policies:
            if policy.tenant == tenant:
                return policy
        return Policy(tenant=tenant)


def _orphans(deployments: pd.DataFrame, stats: pd.DataFrame) -> list[str]:
    """Deployments with metrics but no inventory in the window (vanished or unlabelled)."""
    if stats.empty:
        return []
    known = set(
        zip(deployments["tenant"], deployments["provider"], deployments["deployment"], strict=False)
    )
    return [
        f"{t}/{p}/{d}: metrics but no inventory in the window (ignored)"
        for t, p, d in zip(stats["tenant"], stats["provider"], stats["deployment"], strict=False)
        if (t, p, d) not in known
    ]
