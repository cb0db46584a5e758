"""The ``sandbox`` provider: the local sandbox fleet collected the way a real one would be.

The sandbox (``optiinfra sandbox up``, a *simulated* fleet on loopback ports) is read
only over HTTP, like a cloud's APIs: this adapter never imports ``optiinfra.sandbox``.

* **Inventory** — one :class:`~optiinfra.models.Instance` per server from
  ``GET /sandbox/inventory`` (instance type, GPU model and count, market, price per
  hour, state, start time), with each running server's current engine arguments from
  its own ``GET /admin/config``. Interrupted spot servers are listed with their state.
* **Metrics** — every running server's engine ``/metrics`` and DCGM exporter
  ``/metrics`` (URLs from ``GET /sandbox``) are scraped concurrently by the prometheus
  adapter's direct-scrape code: counters become per-second rates against the previous
  collection's reading (kept in the state store as scrape cursors), histograms become
  ``quantile``-labelled samples, all in the canonical vocabulary. Every sample's
  ``instance`` is the server's name and ``deployment`` its deployment, GPU samples
  included, so a server's engine and GPU samples join on ``instance``. Each running
  server also gets a ``price_usd_per_hour{market}`` sample.
* **Costs** — *estimated* lines (``source=estimated``): each running server's price per
  hour × the part of the collection window since it (re)started. A server that is down
  when collected is not charged for the window.

A server that is not running, or that refuses its scrape (a spot interruption between
the control API's answer and the scrape), is skipped with a note; the provider fails
only when the control API cannot be read or no running server could be scraped.

Every instance and sample carries the label ``sandbox: "true"``: nothing here is real.

Example ``providers.yaml`` entry::

    - name: sandbox
      kind: sandbox
      interval: 1m
      options: {control_url: "http://127.0.0.1:44351"}
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import pandas as pd

from optiinfra.config import ProviderConfig
from optiinfra.models import CostRecord, CostSource, Instance, Market, Sample
from providers.base import CollectionContext, Feature, Provider
from providers.prometheus import CollectionFailed, TargetStatus
from providers.prometheus import cursor_store as cursor_io
from providers.prometheus.canonical import to_frame
from providers.prometheus.detect import ENGINE_SOURCES, allowed_sources
from providers.prometheus.direct import DirectOutcome, Target, collect_targets
from providers.prometheus.scrape import TargetError
from providers.prometheus.series import LabelPolicy, Row
from providers.registry import register
from providers.sandbox.control import SandboxControl, SandboxServer
from providers.sandbox.options import DEPLOYMENT_LABEL, parse_sandbox_options, scrape_options

#: Added to every instance and sample of this provider (DESIGN.md: the sandbox is labelled
#: as such everywhere a user sees it).
SANDBOX_LABELS: dict[str, str] = {"sandbox": "true"}
_MARKETS = {"on-demand": Market.ON_DEMAND, "on_demand": Market.ON_DEMAND,
            "spot": Market.SPOT, "reserved": Market.RESERVED}  # fmt: skip


def _epoch(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def _compact_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@register
class SandboxProvider(Provider):
    """The local sandbox fleet (simulated servers): inventory, prices, estimated costs and
    engine/GPU metrics through its control API and the servers' /metrics."""

    kind: ClassVar[str] = "sandbox"
    description: ClassVar[str] = (
        "The local sandbox fleet (simulated): inventory, prices, estimated costs and "
        "canonical engine and GPU metrics, read over its control API."
    )
    features: ClassVar[frozenset[Feature]] = frozenset(
        {Feature.METRICS, Feature.INVENTORY, Feature.COST}
    )
    unsupported: ClassVar[dict[Feature, str]] = {
        Feature.ACTUATE: "this adapter only reads the sandbox; changes go through the "
        "sandbox actuator",
    }

    def __init__(
        self,
        config: ProviderConfig,
        *,
        cursors: Any = ...,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``cursors``: the state store holding scrape cursors (default: the one named by
        ``ctx.extra["state_url"]``, else the configured one; ``None`` keeps none, so every
        collection reads each server twice). ``transport`` replaces httpx's transport."""
        super().__init__(config)
        self.options = parse_sandbox_options(config)
        self.scrape = scrape_options(self.options)
        self.policy = LabelPolicy(DEPLOYMENT_LABEL)
        self.target_status: list[TargetStatus] = []
        self._cursors = cursors
        self._transport = transport
        self._view: tuple[tuple[datetime, datetime], asyncio.Task[list[SandboxServer]]] | None
        self._view = None

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _http(self) -> httpx.AsyncClient:
        size = self.options.concurrency
        return httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(self.options.target_timeout_seconds),
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            follow_redirects=True,
        )

    def _control(self, client: httpx.AsyncClient) -> SandboxControl:
        return SandboxControl(
            self.options.base_url, client, timeout=self.options.target_timeout_seconds,
            where=f"provider {self.name} (options.control_url)",
        )  # fmt: skip

    # ------------------------------------------------------------ the fleet

    async def servers(self, ctx: CollectionContext) -> list[SandboxServer]:
        """The selected servers, read once per collection window: inventory, metrics and
        costs of one run, which the collect task runs concurrently, share one reading."""
        key = (ctx.start, ctx.end)
        if self._view is None or self._view[0] != key:
            self._view = (key, asyncio.ensure_future(self._read_servers()))
        return await self._view[1]

    async def _read_servers(self) -> list[SandboxServer]:
        async with self._http() as client:
            servers = await self._control(client).servers()
        wanted = self.options.deployments
        if not wanted:
            return servers
        missing = sorted(set(wanted) - {s.deployment for s in servers})
        if missing:
            self._note(f"deployment(s) not in the sandbox: {', '.join(missing)}")
        return [s for s in servers if s.deployment in wanted]

    # ------------------------------------------------------------ metrics

    def _targets(self, server: SandboxServer) -> list[Target]:
        engine = server.engine if server.engine in ENGINE_SOURCES else "auto"
        targets = []
        if server.metrics_url:
            targets.append(Target(server.metrics_url, server.metrics_url, server.name,
                                  allowed_sources(engine)))  # fmt: skip
        if server.dcgm_url:
            targets.append(Target(server.dcgm_url, server.dcgm_url, server.name, ("dcgm",)))
        return targets

    async def collect_metrics(self, ctx: CollectionContext) -> pd.DataFrame:
        """Canonical samples of every running server (rates over the window since the
        previous collection's reading)."""
        servers = await self.servers(ctx)
        self.target_status = []
        for server in servers:
            if not server.running:
                self._note(f"server {server.name} is {server.state}: not scraped")
        targets = [t for s in servers if s.running for t in self._targets(s)]
        if not targets:
            self._note("no running sandbox server to scrape")
            return pd.DataFrame(columns=list(Sample.COLUMNS))
        store = cursor_io.resolve(self._cursors, ctx)
        previous = await cursor_io.load(store, self.name, self._note)
        async with self._http() as client:
            outcome = await collect_targets(
                client, targets, previous, self.policy, self.scrape,
                max_age_seconds=self.options.cursor_max_age_intervals * self.config.interval,
            )  # fmt: skip
        self._record(outcome)
        if all(r.status == "failed" for r in outcome.results):
            causes = "; ".join(f"{r.target.key}: {r.error}" for r in outcome.results)
            raise CollectionFailed(f"provider {self.name}: no sandbox server answered: {causes}")
        # keep the cursors of servers that are down for now: they come back on their ports
        known = [t.key for s in servers for t in self._targets(s)]
        await cursor_io.save(store, self.name, outcome.cursors, known, self._note)
        items = [(r.target.instance, r.at, row) for r in outcome.results for row in r.rows]
        return self._samples(items, servers)

    def _record(self, outcome: DirectOutcome) -> None:
        """Target statuses, and notes: failures one by one, "no previous reading" once."""
        waiting = 0
        for result in outcome.results:
            target = result.target
            self.target_status.append(
                TargetStatus(url=target.key, instance=target.instance, status=result.status,
                             error=result.error, sources=result.sources,
                             samples=len(result.rows), window_seconds=result.window_seconds)
            )  # fmt: skip
            if result.status == "failed":
                self._note(f"server {target.instance}: {target.key} skipped ({result.error})")
            elif result.status == "partial":
                for note in result.notes:
                    self._note(f"server {target.instance}: {target.key}: {note}")
            elif result.notes:
                waiting += 1
        if waiting:
            then = "read twice" if self.scrape.scrape_settle_seconds > 0 else "gauges only"
            self._note(f"{waiting} target(s) had no usable previous reading ({then})")

    def _samples(
        self, items: Sequence[tuple[str, datetime, Row]], servers: list[SandboxServer]
    ) -> pd.DataFrame:
        config = self.config.model_copy(update={"labels": {**self.config.labels, **SANDBOX_LABELS}})
        frame = to_frame(items, config, self.scrape)
        prices = self._price_samples(servers, config)
        if len(prices):
            frame = pd.concat([frame, prices], ignore_index=True) if len(frame) else prices
        deployment = {s.name: s.deployment for s in servers}
        region = {s.name: s.inventory.region for s in servers if s.inventory and s.inventory.region}
        frame["deployment"] = frame["instance"].map(deployment).fillna("").astype(str)
        frame["region"] = frame["instance"].map(region).fillna(self.config.region).astype(str)
        return frame[list(Sample.COLUMNS)]

    def _price_samples(self, servers: list[SandboxServer], config: ProviderConfig) -> pd.DataFrame:
        now = datetime.now(UTC)
        rows = [
            Sample(ts=now, tenant=config.tenant, provider=config.name, instance=s.name,
                   metric="price_usd_per_hour", value=s.inventory.price_usd_per_hour,
                   labels={**config.labels, "market": self._market(s.inventory.market).value})
            for s in servers
            if s.running and s.inventory is not None and s.inventory.price_usd_per_hour is not None
        ]  # fmt: skip
        return Sample.to_frame(rows)

    # ------------------------------------------------------------ inventory

    def _market(self, value: str) -> Market:
        market = _MARKETS.get(value.lower())
        if market is None:
            self._note(f"unknown market {value!r} in the sandbox inventory: recorded as on_demand")
            return Market.ON_DEMAND
        return market

    async def _configs(self, servers: list[SandboxServer]) -> dict[str, dict[str, Any]]:
        """Each running server's ``/admin/config`` (bounded concurrency); failures noted."""
        gate = asyncio.Semaphore(self.options.concurrency)
        running = [s for s in servers if s.running]
        async with self._http() as client:
            control = self._control(client)

            async def read(server: SandboxServer) -> dict[str, Any]:
                async with gate:
                    return await control.server_config(server)

            answers = await asyncio.gather(*(read(s) for s in running), return_exceptions=True)
        configs: dict[str, dict[str, Any]] = {}
        for server, answer in zip(running, answers, strict=True):
            if isinstance(answer, TargetError):
                self._note(f"server {server.name}: GET /admin/config failed ({answer}): "
                           "no engine_args label")  # fmt: skip
            elif isinstance(answer, BaseException):
                raise answer
            else:
                configs[server.name] = answer
        return configs

    def _labels(self, server: SandboxServer, config: dict[str, Any] | None) -> dict[str, str]:
        row = server.inventory
        assert row is not None
        spec = (config or {}).get("spec")
        engine_args = spec.get("engine_args") if isinstance(spec, dict) else None
        stateless = row.stateless if row.stateless is not None else server.stateless
        own = {
            "deployment": server.deployment or row.deployment,
            "model": row.model or server.model,
            "engine": row.engine or server.engine,
            "cloud": row.cloud,
            "config_id": str((config or {}).get("config_id") or server.config_id),
            "price_source": row.price_source,
            "stateless": "" if stateless is None else str(stateless).lower(),
            "engine_args": _compact_json(engine_args) if isinstance(engine_args, dict) else "",
        }
        return {**self.config.labels, **SANDBOX_LABELS, **{k: v for k, v in own.items() if v}}

    async def collect_inventory(self, ctx: CollectionContext) -> pd.DataFrame:
        """One row per server, in whatever state it is."""
        servers = await self.servers(ctx)
        configs = await self._configs(servers)
        now = datetime.now(UTC)
        instances: list[Instance] = []
        for server in servers:
            row = server.inventory
            if row is None:
                self._note(f"server {server.name} is not in GET /sandbox/inventory yet")
                continue
            instances.append(
                Instance(
                    ts=now, tenant=self.config.tenant, provider=self.config.name,
                    instance=row.instance_id, region=row.region or self.config.region,
                    instance_type=row.instance_type, gpu_model=row.gpu, gpu_count=row.gpu_count,
                    market=self._market(row.market), price_usd_per_hour=row.price_usd_per_hour,
                    state=row.state or server.state, started_at=_epoch(row.started_at),
                    labels=self._labels(server, configs.get(server.name)),
                )
            )  # fmt: skip
        return Instance.to_frame(instances)

    # ------------------------------------------------------------ costs

    async def collect_costs(self, ctx: CollectionContext) -> pd.DataFrame:
        """Estimated spend over the window: price per hour × hours each running server
        was up in it (from its start time, which a spot restart resets)."""
        servers = await self.servers(ctx)
        records: list[CostRecord] = []
        for server in servers:
            row = server.inventory
            if row is None or not server.running or row.price_usd_per_hour is None:
                continue
            started = _epoch(row.started_at) or ctx.start
            start = max(ctx.start, started)
            if start >= ctx.end:
                continue
            hours = (ctx.end - start).total_seconds() / 3600.0
            records.append(
                CostRecord(
                    period_start=start, period_end=ctx.end, tenant=self.config.tenant,
                    provider=self.config.name, service="compute", resource=server.name,
                    amount=row.price_usd_per_hour * hours, source=CostSource.ESTIMATED,
                )
            )  # fmt: skip
        return CostRecord.to_frame(records)
