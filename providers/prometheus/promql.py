"""PromQL mode: build one instant query per mapped metric, run them, read the vectors.

Works with anything that answers Prometheus's HTTP API (Prometheus, Thanos, Mimir,
VictoriaMetrics, managed Prometheus). Queries are evaluated at the window's end over the
whole window ``W`` (``[900s]`` for a 15-minute interval). ``G`` is ``instance``, the
deployment label, ``keep_labels`` and the labels the table renames; ``R`` is
``tp_rank, pp_rank, moe_ep_rank`` (copies of one scheduler: one is taken, not summed):

=============  ====================================================================
derive         query (``agg`` is the table's sum / avg / max over what is left)
=============  ====================================================================
value          ``agg by (G) (max without (R) (avg_over_time(x[W])))``
               (``last_over_time`` with ``gauges: last``; per GPU: no aggregation)
rate           ``sum by (G) (max without (R) (rate(x[W])))``; per GPU: ``rate(x[W])``
rate_of_sum    ``sum by (G) (max without (R) (rate(x_sum[W])))``
quantile       ``histogram_quantile(q, sum by (G, le) (max without (R) (rate(x_bucket[W]))))``
ratio          ``sum by (G) (… rate(a[W]) …) / sum by (G) (… rate(b[W]) …)``
idle           ``1 - avg by (G) (rate(node_cpu_seconds_total{mode="idle"}[W]))``
=============  ====================================================================

Only names the server actually has are queried (one ``/api/v1/label/__name__/values``
call, narrowed to the mapped prefixes and the window, lists them), so an engine's
unknown or absent metrics cost nothing. prometheus-api-client is synchronous: queries run
in a thread pool of ``concurrency`` threads over one ``requests`` session whose
connection pool is as large.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from optiinfra.errors import OptiInfraError
from optiinfra.metrics import REPLICA_RANK_LABELS, SourceMapping, canonical_labels, mappings
from providers.prometheus.detect import detect, name_matcher
from providers.prometheus.series import LabelPolicy, Row, table_rank

_AGG = {"sum": "sum", "mean": "avg", "max": "max"}
_ERROR_FIELD = re.compile(r'"error"\s*:\s*"((?:[^"\\]|\\.)*)"')
_STATUS = re.compile(r"HTTP Status Code (\d+)")


class PrometheusUnavailable(OptiInfraError):
    """The PromQL API cannot be used at all (down, refusing, not Prometheus)."""


class QueryFailed(Exception):
    """One query failed; ``str()`` is the cause."""


@dataclass(frozen=True)
class Query:
    """One PromQL expression and how its result becomes canonical rows."""

    text: str
    source: str
    mapping: SourceMapping
    quantile: float | None = None

    @property
    def rank(self) -> int:
        return table_rank(self.source, self.mapping.source_name)


def exposed_name(mapping: SourceMapping, present: set[str]) -> str | None:
    """The name a mapped metric has on this server (counters with or without ``_total``,
    histograms by their ``_bucket`` or ``_sum`` series), or None when absent."""
    base = mapping.source_name
    if mapping.source_type == "counter":
        stem = base.removesuffix("_total")
        return next((n for n in (base, stem, stem + "_total") if n in present), None)
    if mapping.source_type == "histogram":
        part = "_sum" if mapping.derive == "rate_of_sum" else "_bucket"
        return base if base + part in present else None
    return base if base in present else None


def build_queries(
    present: set[str],
    sources: Iterable[str],
    window_seconds: float,
    policy: LabelPolicy,
    *,
    gauges: str = "mean",
    quantiles: Iterable[float] = (0.5, 0.95, 0.99),
) -> list[Query]:
    """Every query worth sending for the names ``present`` on the server."""
    window = f"{max(1, round(window_seconds))}s"
    replicas = ", ".join(REPLICA_RANK_LABELS)
    over_time = "avg_over_time" if gauges == "mean" else "last_over_time"
    queries: list[Query] = []
    ratio_sides: dict[tuple[str, str], dict[str, tuple[SourceMapping, str]]] = {}
    for source in sources:
        for mapping in mappings(source):
            name = exposed_name(mapping, present)
            if name is None:
                continue
            group = ", ".join(dict.fromkeys(["instance", *sorted(policy.kept_names(mapping))]))
            per_series = mapping.rank_aggregation == "none"

            def summed(inner: str, agg: str = "sum", by: str = group) -> str:
                return f"{agg} by ({by}) (max without ({replicas}) ({inner}))"

            derive = mapping.derive
            if derive == "value":
                inner = f"{over_time}({name}[{window}])"
                text = inner if per_series else summed(inner, _AGG[mapping.rank_aggregation])
            elif derive == "rate":
                inner = f"rate({name}[{window}])"
                text = inner if per_series else summed(inner)
            elif derive == "rate_of_sum":
                text = summed(f"rate({name}_sum[{window}])")
            elif derive == "idle_complement":
                text = f'1 - avg by ({group}) (rate({name}{{mode="idle"}}[{window}]))'
            elif derive in ("ratio_numerator", "ratio_denominator"):
                side = "num" if derive == "ratio_numerator" else "den"
                sides = ratio_sides.setdefault((source, mapping.canonical), {})
                sides[side] = (mapping, summed(f"rate({name}[{window}])"))
                continue
            elif derive == "quantile" and mapping.source_type == "histogram":
                buckets = f"rate({name}_bucket[{window}])"
                if not per_series:
                    buckets = summed(buckets, by=f"{group}, le")
                for q in quantiles:
                    queries.append(
                        Query(f"histogram_quantile({q:g}, {buckets})", source, mapping, q)
                    )
                continue
            else:
                continue
            queries.append(Query(text, source, mapping))
    for (source, _), sides in ratio_sides.items():
        if "num" in sides and "den" in sides:
            numerator, num_text = sides["num"]
            queries.append(Query(f"{num_text} / {sides['den'][1]}", source, numerator))
    return queries


def rows_from_result(query: Query, result: Any) -> list[tuple[str, Row]]:
    """``(instance, row)`` pairs of an instant-vector result; NaN/inf elements dropped."""
    out: list[tuple[str, Row]] = []
    if not isinstance(result, list):
        raise QueryFailed(f"expected an instant vector, got {type(result).__name__}")
    mapping = query.mapping
    for element in result:
        try:
            raw_labels = dict(element.get("metric") or {})
            value = float(element["value"][1])
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            raise QueryFailed("malformed vector element in the answer") from None
        if not math.isfinite(value):
            continue
        raw_labels.pop("__name__", None)
        instance = str(raw_labels.pop("instance", ""))
        labels = canonical_labels(mapping, {str(k): str(v) for k, v in raw_labels.items()})
        if mapping.derive in ("ratio_numerator", "idle_complement"):
            value = min(1.0, max(0.0, value))
        else:
            value *= mapping.scale
        if query.quantile is not None:
            labels["quantile"] = f"{query.quantile:g}"
        out.append((instance, Row(query.source, query.rank, mapping.canonical, labels, value)))
    return out


class PromQLClient:
    """prometheus-api-client over one pooled ``requests`` session, with clear errors."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        pool_size: int,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        verify: bool = True,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._own_session = session is None
        self._session = session or requests.Session()
        self._session.verify = verify
        retry = Retry(total=2, read=0, backoff_factor=0.1, raise_on_status=False,
                      status_forcelist=(502, 503, 504))  # fmt: skip
        self._client = PrometheusConnect(
            url=self.url, headers=headers, auth=auth, session=self._session,
            timeout=timeout, retry=retry,
        )  # fmt: skip
        # PrometheusConnect mounts an adapter with urllib3's default pool of 10; replace
        # it (same prefix) so `pool_size` threads do not open and discard connections.
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=pool_size)
        self._session.mount(self.url, adapter)

    def names(self, start: datetime, end: datetime, sources: Iterable[str]) -> set[str]:
        """Metric names of the given tables with data in [start, end]."""
        params = {
            "match[]": name_matcher(sources),
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
        }
        try:
            values = self._client.get_label_values("__name__", params=params)
        except requests.JSONDecodeError:
            raise PrometheusUnavailable(
                f"{self.url} did not answer like a Prometheus API (not JSON)"
            ) from None
        except requests.RequestException as exc:
            raise PrometheusUnavailable(
                f"{self.url} is unreachable: {request_cause(exc)}"
            ) from None
        except PrometheusApiClientException as exc:
            raise PrometheusUnavailable(
                f"{self.url} refused to list metric names: {api_cause(exc)}"
            ) from None
        except (ValueError, KeyError, TypeError):
            raise PrometheusUnavailable(
                f"{self.url} did not answer like a Prometheus API (no data field)"
            ) from None
        if not isinstance(values, list):
            raise PrometheusUnavailable(f"{self.url} answered an unexpected label list")
        return {str(v) for v in values}

    def query(self, text: str, at: datetime) -> Any:
        """The raw ``result`` of one instant query (QueryFailed with a short cause)."""
        try:
            return self._client.custom_query(text, params={"time": f"{at.timestamp():.3f}"})
        except requests.JSONDecodeError:
            raise QueryFailed("answer is not JSON") from None
        except requests.RequestException as exc:
            raise QueryFailed(request_cause(exc)) from None
        except PrometheusApiClientException as exc:
            raise QueryFailed(api_cause(exc)) from None
        except (ValueError, KeyError, TypeError):
            raise QueryFailed("answer is not a Prometheus query result") from None

    def close(self) -> None:
        if self._own_session:
            self._session.close()


def api_cause(exc: PrometheusApiClientException) -> str:
    """``HTTP 400: parse error …`` from the client's ``HTTP Status Code 400 (b'{…}')``."""
    text = str(exc)
    status = _STATUS.search(text)
    error = _ERROR_FIELD.search(text)
    head = f"HTTP {status.group(1)}" if status else "error"
    return f"{head}: {error.group(1)[:300]}" if error else head


def request_cause(exc: requests.RequestException) -> str:
    """A short transport cause: connection refused, timed out, name not resolved…"""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = str(exc)
    for pattern, cause in (("refused", "connection refused"),
                           ("Name or service not known", "host name not resolved"),
                           ("nodename nor servname", "host name not resolved")):  # fmt: skip
        if pattern in text:
            return cause
    return f"{type(exc).__name__}: {text[:200]}"


async def run_queries(
    client: PromQLClient, queries: list[Query], at: datetime, concurrency: int
) -> tuple[list[tuple[str, Row]], list[str]]:
    """Run ``queries`` on ``concurrency`` threads; failures become notes, not errors."""
    if not queries:
        return [], []
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(queries)),
                              thread_name_prefix="promql")  # fmt: skip
    try:
        answers = await asyncio.gather(
            *(loop.run_in_executor(pool, client.query, q.text, at) for q in queries),
            return_exceptions=True,
        )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    rows: list[tuple[str, Row]] = []
    notes: list[str] = []
    for query, answer in zip(queries, answers, strict=True):
        try:
            if isinstance(answer, BaseException):
                raise answer
            rows += rows_from_result(query, answer)
        except QueryFailed as exc:
            notes.append(f"query {query.text!r} failed: {exc}")
    return rows, notes


def present_sources(present: set[str], sources: Iterable[str]) -> list[str]:
    """The tables whose metrics the server has (engine detection in PromQL mode)."""
    return detect(present, sources)
