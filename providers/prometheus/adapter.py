"""The ``prometheus`` provider: canonical metrics from a PromQL API or from ``/metrics``.

Two ways to read a fleet, chosen by what the ``providers.yaml`` entry gives:

* ``prometheus_url`` — **PromQL mode**: one instant query per mapped metric over the
  collection window, evaluated at its end (see :mod:`.promql` for the query shapes);
  rates and ``histogram_quantile`` come from the server.
* ``metrics_urls`` / ``dcgm_url`` — **direct scrape**: every target is scraped
  concurrently (``concurrency`` at a time, one Prefect task for the whole provider) and
  parsed with prometheus_client's parser. Gauges are read as they are; counters and
  histograms need two readings, so the previous reading of each target is kept in the
  state store (table ``scrape_cursors``) and rates and quantiles cover (previous, now].
  A target with no usable previous reading (first run, older than
  ``cursor_max_age_intervals`` × ``interval``, or a counter that went down) is scraped a
  second time ``scrape_settle_seconds`` later, so the first collection already has rates.
  A URL without a path gets ``/metrics``. DCGM exporters may be listed in
  ``metrics_urls`` too: every target is recognised by its metric names.

Both may be set: direct targets are scraped, and PromQL series whose ``instance`` is a
direct target are dropped (the direct reading wins). ``dcgm_url`` is a DCGM exporter's
``/metrics``, always scraped directly; set it only when Prometheus does not scrape it
(Prometheus's own ``DCGM_FI_*`` series are queried in PromQL mode anyway).

Faults: a target that is down, slow or answers garbage is reported — a note naming its
URL and cause, and a row of :attr:`PrometheusProvider.target_status` — and the others are
collected; the provider fails only when nothing could be read. A Prometheus that cannot
be reached fails the provider (naming its URL) unless direct targets answered; a single
failing query is a note. Unknown metric names are ignored.

Labels: an engine series keeps only ``instance``, the deployment label and
``keep_labels`` (the rest — ``finished_reason``, ``is_streaming``, ranks — is summed or
averaged as the mapping table says, one copy taken over tensor/pipeline ranks); a GPU
series keeps all its labels. The deployment label's value becomes ``deployment``.
``instance`` is the target's ``host:port``, or Prometheus's ``instance`` label.

Credentials (Prometheus only, never sent to scrape targets): ``bearer_token``, or
``username`` and ``password``.

Options (:data:`OPTIONS` holds the same table as data):

========================  =================  =========================================
option                    default            meaning
========================  =================  =========================================
engine                    auto               auto, vllm, sglang or tgi: which engine's
                                             metrics are read (DCGM/node always are)
concurrency               64                 targets scraped / queries in flight at once
scrape_settle_seconds     5.0                delay of the second reading when a target
                                             has no usable previous one (0: none)
target_timeout_seconds    10.0               longest one scrape or one query may take
label_deployment          model_name         label whose value is the deployment
deployment                ""                 deployment of series without that label
keep_labels               []                 more labels kept through aggregation
quantiles                 [0.5, 0.95, 0.99]  quantiles taken from histograms
gauges                    mean               PromQL: gauge over the window, mean or last
cursor_max_age_intervals  3.0                previous readings older than this many
                                             intervals are not used for rates
verify_tls                True               check TLS certificates
========================  =================  =========================================

Example ``providers.yaml`` entries::

    - name: fleet-prom
      kind: prometheus
      prometheus_url: http://prometheus:9090
      options: {keep_labels: [namespace]}
    - name: lab
      kind: prometheus
      metrics_urls: [http://10.0.0.5:8000/metrics, http://10.0.0.6:30000/metrics]
      dcgm_url: http://10.0.0.5:9400/metrics
      options: {scrape_settle_seconds: 3}
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
import pandas as pd
import requests

from optiinfra.config import ProviderConfig
from optiinfra.errors import ConfigError, ConfigIssue, OptiInfraError
from optiinfra.secrets import provider_secret
from providers.base import CollectionContext, Feature, Provider
from providers.prometheus import cursor_store as cursor_io
from providers.prometheus.canonical import merge, to_frame
from providers.prometheus.detect import allowed_sources
from providers.prometheus.direct import Target, collect_targets
from providers.prometheus.options import OPTIONS, check_sources, parse_options
from providers.prometheus.promql import (
    PrometheusUnavailable,
    PromQLClient,
    build_queries,
    present_sources,
    run_queries,
)
from providers.prometheus.series import LabelPolicy, Row
from providers.registry import register

_CREDENTIALS = ("bearer_token", "username", "password")


class CollectionFailed(OptiInfraError):
    """Nothing could be read from any source of the provider (each cause is listed)."""


@dataclass
class TargetStatus:
    """How one target (or the PromQL API) fared in the last collection."""

    url: str
    instance: str
    status: Literal["ok", "partial", "failed"]
    error: str | None = None
    sources: tuple[str, ...] = ()
    samples: int = 0
    window_seconds: float | None = None


def _target(raw: str, sources: tuple[str, ...]) -> Target:
    parts = urlsplit(raw)
    path = parts.path if parts.path not in ("", "/") else "/metrics"
    hostport = parts.netloc.rsplit("@", 1)[-1]
    if parts.port is None:
        hostport = f"{hostport}:{443 if parts.scheme == 'https' else 80}"
    url = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    key = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], path, parts.query, ""))
    return Target(url=url, key=key, instance=hostport, sources=sources)


@register
class PrometheusProvider(Provider):
    """Any PromQL API, or ``/metrics`` endpoints scraped directly (vLLM, SGLang, TGI, DCGM)."""

    kind: ClassVar[str] = "prometheus"
    aliases: ClassVar[tuple[str, ...]] = ("promql", "scrape")
    description: ClassVar[str] = (
        "Canonical serving and GPU metrics from a PromQL API or by scraping /metrics directly."
    )
    features: ClassVar[frozenset[Feature]] = frozenset({Feature.METRICS})
    unsupported: ClassVar[dict[Feature, str]] = {
        Feature.COST: "metrics carry no prices or bills; pair it with a cloud or GPU-cloud "
        "provider for costs",
        Feature.INVENTORY: "metrics do not say what instance type or market a server runs "
        "on; inventory comes from the cloud's API",
        Feature.ACTUATE: "Prometheus and /metrics are read-only; changes go through the "
        "platform's own provider",
    }
    OPTIONS = OPTIONS

    def __init__(
        self,
        config: ProviderConfig,
        *,
        cursors: Any = ...,
        transport: httpx.AsyncBaseTransport | None = None,
        session: requests.Session | None = None,
    ) -> None:
        """``cursors``: the state store holding scrape cursors (default: the one named by
        ``ctx.extra["state_url"]``, else the configured one; ``None`` keeps none, so
        every collection takes two readings). ``transport`` / ``session`` replace the
        HTTP transports of the direct scrape (httpx) and of PromQL (requests)."""
        super().__init__(config)
        check_sources(config)
        self.options = parse_options(config)
        unknown = sorted(set(config.credentials) - set(_CREDENTIALS))
        if unknown:
            raise ConfigError([ConfigIssue(
                file="providers.yaml", line=None, field=f"providers.{config.name}.credentials",
                message=f"unknown credential(s) {', '.join(unknown)}; a prometheus provider "
                f"takes {', '.join(_CREDENTIALS)}",
            )])  # fmt: skip
        self.policy = LabelPolicy(self.options.label_deployment, tuple(self.options.keep_labels))
        engines = allowed_sources(self.options.engine)
        targets = [_target(str(u), engines) for u in config.metrics_urls]
        if config.dcgm_url is not None:
            targets.append(_target(str(config.dcgm_url), ("dcgm",)))
        self.targets: list[Target] = list({t.key: t for t in targets}.values())
        self.target_status: list[TargetStatus] = []
        self._cursors = cursors
        self._transport = transport
        self._session = session

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    async def collect_metrics(self, ctx: CollectionContext) -> pd.DataFrame:
        """Samples for the window: PromQL results at its end, direct readings when read."""
        self.notes.clear()
        self.target_status = []
        items: list[tuple[str, datetime, Row]] = []
        if self.config.prometheus_url is not None:
            try:
                items += await self._collect_promql(ctx)
            except PrometheusUnavailable as exc:
                if not self.targets:
                    raise CollectionFailed(
                        f"provider {self.name}: Prometheus API {exc.message}"
                    ) from None
                self._note(f"Prometheus API {exc.message}")
        if self.targets:
            items += await self._collect_direct(ctx)
            if all(s.status == "failed" for s in self.target_status):
                causes = "; ".join(f"{s.url}: {s.error}" for s in self.target_status)
                raise CollectionFailed(f"provider {self.name}: every source failed: {causes}")
        return to_frame(items, self.config, self.options)

    # ------------------------------------------------------------ PromQL

    def _promql_client(self) -> PromQLClient:
        headers: dict[str, str] = {}
        auth: tuple[str, str] | None = None
        creds = self.config.credentials
        if "bearer_token" in creds:
            token = provider_secret(self.config, "bearer_token").get_secret_value()
            headers["Authorization"] = f"Bearer {token}"
        if "username" in creds or "password" in creds:
            auth = (
                provider_secret(self.config, "username").get_secret_value(),
                provider_secret(self.config, "password").get_secret_value(),
            )
        return PromQLClient(
            str(self.config.prometheus_url),
            timeout=self.options.target_timeout_seconds,
            pool_size=self.options.concurrency,
            headers=headers or None,
            auth=auth,
            verify=self.options.verify_tls,
            session=self._session,
        )

    async def _collect_promql(self, ctx: CollectionContext) -> list[tuple[str, datetime, Row]]:
        client = self._promql_client()
        status = TargetStatus(url=client.url, instance="", status="ok")
        self.target_status.append(status)
        try:
            wanted = allowed_sources(self.options.engine)
            try:
                present = await asyncio.to_thread(client.names, ctx.start, ctx.end, wanted)
            except PrometheusUnavailable as exc:
                status.status, status.error = "failed", exc.message
                raise
            sources = present_sources(present, wanted)
            status.sources = tuple(sources)
            window = (ctx.end - ctx.start).total_seconds()
            status.window_seconds = window
            queries = build_queries(
                present, sources, window, self.policy,
                gauges=self.options.gauges, quantiles=self.options.quantiles,
            )  # fmt: skip
            if not queries:
                self._note(f"Prometheus API {client.url} has no vLLM, SGLang, TGI, DCGM or "
                           "node_exporter series in the window")  # fmt: skip
            pairs, notes = await run_queries(client, queries, ctx.end, self.options.concurrency)
        finally:
            client.close()
        for note in notes:
            self._note(f"Prometheus API {client.url}: {note}")
        if notes:
            status.status, status.error = (
                "partial",
                f"{len(notes)} of {len(queries)} queries failed",
            )
        direct = {t.instance for t in self.targets}
        by_instance: dict[str, list[Row]] = {}
        for instance, row in pairs:
            if instance not in direct:
                by_instance.setdefault(instance, []).append(row)
        items = [(i, ctx.end, row) for i, rows in by_instance.items() for row in merge(rows)]
        status.samples = len(items)
        return items

    # ------------------------------------------------------------ direct scrape

    async def _collect_direct(self, ctx: CollectionContext) -> list[tuple[str, datetime, Row]]:
        store = cursor_io.resolve(self._cursors, ctx)
        previous = await cursor_io.load(store, self.name, self._note)
        limits = httpx.Limits(max_connections=self.options.concurrency,
                              max_keepalive_connections=self.options.concurrency)  # fmt: skip
        async with httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(self.options.target_timeout_seconds),
            limits=limits,
            verify=self.options.verify_tls,
            follow_redirects=True,
        ) as client:
            outcome = await collect_targets(
                client, self.targets, previous, self.policy, self.options,
                max_age_seconds=self.options.cursor_max_age_intervals * self.config.interval,
            )  # fmt: skip
        waiting = [r for r in outcome.results if r.status == "ok" and r.notes]
        summarised = {id(r) for r in waiting} if len(waiting) > 3 else set()
        if summarised:  # one line, not one per target, for a fleet's first collection
            self._note(f"{len(waiting)} targets had no usable previous reading (e.g. "
                       f"{waiting[0].target.key}: {waiting[0].notes[0]})")  # fmt: skip
        for result in outcome.results:
            self.target_status.append(
                TargetStatus(url=result.target.key, instance=result.target.instance,
                             status=result.status, error=result.error,
                             sources=result.sources, samples=len(result.rows),
                             window_seconds=result.window_seconds)
            )  # fmt: skip
            if id(result) in summarised:
                continue
            for note in result.notes:
                self._note(f"target {result.target.key}: {note}")
        await cursor_io.save(
            store, self.name, outcome.cursors, [t.key for t in self.targets], self._note
        )
        return [(r.target.instance, r.at, row) for r in outcome.results for row in r.rows]
