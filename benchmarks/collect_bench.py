"""One collection cycle over a 1,000-target sandbox fleet: direct scrape and through Prometheus.

The issue's target: a 1,000-target cycle in under 30 s on 2 cores. What runs where:

* **The fleet** — ``--targets`` / 2 replicas of one small deployment (Llama-3.2-1B on
  H100) with the DCGM exporter on, so every replica is two scrape targets — runs in its
  own process (``python -m optiinfra.sandbox run`` on a fleet YAML written here), with
  its own light Poisson load (``--load-rps-per-replica``) so counters and histograms
  move. The collector is measured apart from the servers.
* **The collector** is this process: the real ``collect_flow`` under
  ``prefect_test_harness`` (a temporary Prefect server on SQLite in a child process,
  heartbeats off as in the test suite; its start is timed apart), writing into a fresh
  embedded store in a temporary ``OPTIINFRA_HOME``. Provider entries set ``retries: 0``
  so a failure is not hidden by a retry.

1. **Direct scrape**: one ``prometheus`` provider listing every ``/metrics`` URL. A first
   cycle (no stored cursors: every target is read twice, ``scrape_settle_seconds`` apart
   — that wait is reported apart), ``--gap`` s later a second one (cursors present),
   then ``PrometheusProvider.collect_metrics`` alone (no Prefect, no store write) and the
   store write alone, so the flow's own overhead shows. With ``--profile`` (``auto``:
   when the second cycle misses the target) one more adapter-only collection runs under
   cProfile: own time by package and the top functions.
2. **Through Prometheus**: Debian's ``prometheus`` scrapes the same targets every
   ``--prom-interval`` s; once every target is up and has been scraped
   ``--prom-scrapes`` times, one cycle in PromQL mode (window = the provider's 15-minute
   interval), then the adapter alone and the query stage alone (queries issued, series
   returned). A real 15-minute window at 15 s holds 60 points per series, the first
   cycle's only a few: ``--prom-later`` s later the cycle and the query stage run again
   with more. 15 s is the interval of Prometheus's example configuration; 1,000 targets
   at 1 s would be 1,000 scrapes/s against the one fleet process on the same 2 cores.

For each cycle: wall time, targets/s, samples stored, targets with samples in the
store, target-level failures, and the CPU seconds of the collector, the fleet,
Prometheus and the Prefect server over it. Other work on the machine skews the figures:
the load average is printed at start and end.

Example (about a minute; the full run, with a profile, takes about 4)::

    .venv/bin/python benchmarks/collect_bench.py --quick
    .venv/bin/python benchmarks/collect_bench.py --profile always \\
        --json benchmarks/results/collect_bench.json
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine as common_machine  # noqa: E402
from benchmarks.machine import profile_area, reproduce_command  # noqa: E402
from tests.e2e.prometheus_server import free_port, scrape_config  # noqa: E402

MODEL = "meta-llama/Llama-3.2-1B"
GPU = "H100"
TARGET_S = 30.0


# -- the processes around the collector ---------------------------------------------------


class Sandbox:
    """The sandbox fleet in its own process; its endpoints come from its state file."""

    def __init__(self, workdir: Path, replicas: int, load_rps: float, seed: int) -> None:
        self.home = workdir / "sandbox-home"
        self.fleet_file = workdir / "fleet.yaml"
        deployment = {
            "name": "bench",
            "model": MODEL,
            "gpu": GPU,
            "replicas": replicas,
            "dcgm": True,
            "engine_args": {"max_model_len": 8192},
            "load": {"kind": "poisson", "rps": load_rps, "prompt_tokens": 256, "output_tokens": 32},
        }
        spec = {"version": 1, "sandbox": {"seed": seed}, "deployments": [deployment]}
        self.fleet_file.write_text(json.dumps(spec, indent=2))  # JSON is YAML
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> dict[str, Any]:
        # The child writes $OPTIINFRA_HOME/sandbox/state.json (whatever --state-file says):
        # point both at the same file.
        state_file = self.home / "sandbox" / "state.json"
        self.log = (self.home.parent / "sandbox.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "optiinfra.sandbox",
                "run",
                "--fleet",
                str(self.fleet_file),
                "--state-file",
                str(state_file),
            ],
            env={**os.environ, "OPTIINFRA_HOME": str(self.home), "PYTHONUNBUFFERED": "1"},
            cwd=self.home.parent,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not state_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = (self.home.parent / "sandbox.log").read_text()[-2000:]
                raise RuntimeError(f"the sandbox did not start:\n{tail}")
            time.sleep(0.2)
        return json.loads(state_file.read_text())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: the sandbox stops its servers cleanly
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self.log.close()


class Prometheus:
    """Debian's ``prometheus`` on a free loopback port, scraping the fleet."""

    def __init__(self, workdir: Path, jobs: dict[str, list[str]], interval: float) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("the prometheus binary is missing: apt-get install prometheus")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(scrape_config(jobs, interval=f"{interval:g}s"))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = workdir / "prometheus.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def query(self, expr: str) -> float | None:
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30).json()
        result = body.get("data", {}).get("result", [])
        return float(result[0]["value"][1]) if result else None

    def head_series(self) -> int | None:
        body = httpx.get(f"{self.url}/api/v1/status/tsdb", timeout=30).json()
        return body.get("data", {}).get("headStats", {}).get("numSeries")

    def wait(self, targets: int, scrapes: int, timeout: float) -> float:
        """Until every target is up and scraped ``scrapes`` times; seconds it took."""
        start = time.monotonic()
        last_print = 0.0
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            up = least = None
            try:
                up = self.query("count(up == 1)")
                least = self.query("min(count_over_time(up[1h]))")
            except (httpx.HTTPError, ValueError):
                pass  # not ready yet
            waited = time.monotonic() - start
            if up is not None and up >= targets and least is not None and least >= scrapes:
                return waited
            if waited > timeout:
                raise RuntimeError(
                    f"{up} of {targets} targets up, min scrapes {least}, after {timeout:g} s"
                )
            if waited - last_print >= 10:
                print(
                    f"    waiting: {up or 0:.0f} of {targets} up, least scraped "
                    f"{least or 0:.0f} times ({waited:.0f} s)",
                    flush=True,
                )
                last_print = waited
            time.sleep(1.0)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Cpu:
    """CPU seconds of this process and of the other processes over a block."""

    def __init__(self, others: dict[str, int]) -> None:
        self.others = others

    def _read(self) -> dict[str, float]:
        me = psutil.Process()
        out = {"collector": sum(me.cpu_times()[:2])}
        known = set(self.others.values())
        prefect = 0.0
        for child in me.children(recursive=True):  # the harness's Prefect server
            if child.pid not in known:
                with _quiet():
                    prefect += sum(child.cpu_times()[:2])
        out["prefect_server"] = prefect
        for name, pid in self.others.items():
            with _quiet():
                out[name] = sum(psutil.Process(pid).cpu_times()[:2])
        return out

    @contextmanager
    def measure(self, into: dict[str, Any]) -> Iterator[None]:
        before, start = self._read(), time.perf_counter()
        try:
            yield
        finally:
            wall = time.perf_counter() - start
            after = self._read()
            into["wall_s"] = round(wall, 3)
            into["cpu_s"] = {k: round(after[k] - before.get(k, 0.0), 2) for k in after}


def _quiet() -> suppress:
    """For a process that ended meanwhile."""
    return suppress(psutil.Error)


# -- one cycle --------------------------------------------------------------------------


def providers_yaml(path: Path, name: str, body: dict[str, Any]) -> Path:
    entry = {"name": name, "kind": "prometheus", "retries": 0, **body}
    path.write_text(json.dumps({"version": 1, "providers": [entry]}, indent=2))
    return path


def stored(provider: str, since: datetime) -> dict[str, Any]:
    """What the store holds for ``provider`` from ``since`` on."""
    from optiinfra.runtime import load_runtime
    from optiinfra.store.timeseries import open_timeseries

    store = open_timeseries(load_runtime(None).metrics_url)
    try:
        frame = store.recent_samples(since=since, provider=provider)
    finally:
        store.close()
    return {
        "rows": len(frame),
        "instances": int(frame["instance"].nunique()) if len(frame) else 0,
        "metrics": int(frame["metric"].nunique()) if len(frame) else 0,
        "by_engine": {str(k): int(v) for k, v in frame["engine"].value_counts().items()},
    }


def flow_cycle(config: Path, provider: str, targets: int, cpu: Cpu) -> dict[str, Any]:
    """One run of the real collection flow for one provider."""
    from flows.collect import collect_flow

    out: dict[str, Any] = {}
    since = datetime.now(UTC)
    with cpu.measure(out):
        state = collect_flow(config_path=str(config), providers=[provider], return_state=True)
    summary = state.result()
    result = summary.results[0]
    out.update(
        flow_state=state.name,
        status=str(result.status),
        error=result.error,
        provider_collect_s=result.duration_seconds,
        flow_overhead_s=round(out["wall_s"] - result.duration_seconds, 3),
        samples_stored=result.samples,
        targets_per_s=round(targets / out["wall_s"], 1),
        target_notes=sum(1 for n in result.notes if n.startswith("target ")),
        notes=result.notes[:5],
        store=stored(provider, since),
    )
    out["targets_failed_or_missing"] = targets - out["store"]["instances"]
    return out


def adapter_cycle(config: Path, cpu: Cpu, profile: cProfile.Profile | None = None) -> Any:
    """``PrometheusProvider.collect_metrics`` alone (cursors in the state store), then
    the store write alone; (figures, frame)."""
    from optiinfra.runtime import load_runtime
    from providers.prometheus import PrometheusProvider
    from tasks.collect import ProviderBatch, collection_window, write_provider_batch

    runtime = load_runtime(config)
    entry = runtime.config.providers[0]
    provider = PrometheusProvider(entry)
    ctx = collection_window(entry, datetime.now(UTC), runtime.state_url)

    async def collect() -> Any:
        try:
            return await provider.collect_metrics(ctx)
        finally:
            await provider.aclose()

    out: dict[str, Any] = {}
    with cpu.measure(out):
        if profile is not None:
            profile.enable()
        try:
            frame = asyncio.run(collect())
        finally:
            if profile is not None:
                profile.disable()
    statuses = Counter(s.status for s in provider.target_status)
    out["samples"] = len(frame)
    out["target_status"] = dict(statuses)
    out["failures"] = [f"{s.url}: {s.error}" for s in provider.target_status if s.status != "ok"][
        :5
    ]
    out["notes"] = provider.notes[:5]
    batch = ProviderBatch(provider=entry.name, kind=entry.kind, frames={"samples": frame})
    start = time.perf_counter()
    write_provider_batch(runtime.metrics_url, batch, runtime.settings.lock_timeout_seconds)
    out["store_write_s"] = round(time.perf_counter() - start, 3)
    return out, frame


# -- 1. direct scrape -----------------------------------------------------------------------


def run_direct(args: argparse.Namespace, work: Path, urls: list[str], cpu: Cpu) -> dict[str, Any]:
    options: dict[str, Any] = {"scrape_settle_seconds": args.settle}
    if args.concurrency:
        options["concurrency"] = args.concurrency
    config = providers_yaml(
        work / "direct.yaml", "direct", {"metrics_urls": urls, "options": options}
    )
    n = len(urls)
    out: dict[str, Any] = {"targets": n, "options": options}
    print(
        f"  first cycle (no cursors: every target read twice, {args.settle:g} s apart) ...",
        flush=True,
    )
    first = out["first_cycle"] = flow_cycle(config, "direct", n, cpu)
    first["settle_wait_s"] = args.settle
    first["wall_without_settle_s"] = round(first["wall_s"] - args.settle, 3)
    _print_cycle("first cycle", first, n)
    time.sleep(args.gap)
    print(f"  second cycle ({args.gap:g} s later, cursors present) ...", flush=True)
    second = out["second_cycle"] = flow_cycle(config, "direct", n, cpu)
    _print_cycle("second cycle", second, n)
    time.sleep(args.gap)
    adapter, _frame = adapter_cycle(config, cpu)
    adapter["targets_per_s"] = round(n / adapter["wall_s"], 1)
    out["adapter_only"] = adapter
    print(
        f"  adapter alone (PrometheusProvider.collect_metrics, cursors present): "
        f"{adapter['wall_s']:.2f} s, {adapter['targets_per_s']:.0f} targets/s, "
        f"{adapter['samples']} samples, targets {adapter['target_status']}; "
        f"store write alone {adapter['store_write_s']:.2f} s",
        flush=True,
    )
    missed = second["wall_s"] >= TARGET_S
    if args.profile == "always" or (args.profile == "auto" and missed):
        time.sleep(args.gap)
        out["profile"] = profile_direct(config, cpu, args.top)
    return out


def profile_direct(config: Path, cpu: Cpu, top_n: int) -> dict[str, Any]:
    profiler = cProfile.Profile()
    row, _frame = adapter_cycle(config, cpu, profiler)
    stats = pstats.Stats(profiler, stream=io.StringIO()).stats  # type: ignore[attr-defined]
    by_area: dict[str, float] = {}
    top = []
    idle = 0.0
    for (filename, line, func), (_cc, calls, tottime, cumtime, _) in stats.items():
        if "epoll" in func or func == "<method 'poll' of 'select.epoll' objects>":
            idle += tottime  # the loop waiting for the servers: not the collector's work
            continue
        area = profile_area(filename)
        by_area[area] = by_area.get(area, 0.0) + tottime
        top.append((tottime, cumtime, calls, f"{area}:{line}({func})"))
    busy = sum(by_area.values())
    top.sort(reverse=True)
    areas = sorted(by_area.items(), key=lambda kv: -kv[1])
    print(
        f"  profile of one adapter-only collection ({row['wall_s']:.2f} s under cProfile): "
        f"{busy:.2f} s busy, {idle:.2f} s waiting in epoll; own time by area:"
    )
    for area, seconds in areas[:12]:
        print(f"    {seconds / busy:6.1%}  {seconds:6.2f} s  {area}")
    print("  top functions by own time (own s, cumulative s, calls):")
    for tottime, cumtime, calls, name in top[:top_n]:
        print(f"    {tottime:6.2f} {cumtime:7.2f} {calls:9d}  {name}")
    return {
        "run": row,
        "busy_s": round(busy, 2),
        "epoll_wait_s": round(idle, 2),
        "own_time_by_area": {a: round(s, 3) for a, s in areas[:20]},
        "top_functions": [
            {"function": n, "own_s": round(t, 3), "cumulative_s": round(c, 3), "calls": k}
            for t, c, k, n in top[:30]
        ],
    }


# -- 2. through Prometheus --------------------------------------------------------------


def run_promql(
    args: argparse.Namespace, work: Path, hostports: dict[str, list[str]], cpu: Cpu
) -> dict[str, Any]:
    n = sum(len(v) for v in hostports.values())
    out: dict[str, Any] = {"targets": n, "scrape_interval_s": args.prom_interval}
    start = time.perf_counter()
    server = Prometheus(work / "prometheus", hostports, args.prom_interval)
    cpu.others["prometheus"] = server.process.pid
    try:
        timeout = 60 + (args.prom_scrapes + 2) * args.prom_interval
        waiting: dict[str, Any] = {}
        with cpu.measure(waiting):  # what scraping the fleet costs Prometheus and the fleet
            server.wait(n, args.prom_scrapes, timeout)
        out["ready_after_s"] = round(time.perf_counter() - start, 1)
        out["while_waiting"] = waiting
        out["scrapes_per_target"] = server.query("min(count_over_time(up[1h]))")
        out["head_series"] = server.head_series()
        out["scrape_duration_avg_s"] = server.query("avg(scrape_duration_seconds)")
        out["samples_per_scrape_avg"] = server.query("avg(scrape_samples_scraped)")
        print(
            f"  Prometheus ready: all {n} targets up and scraped >= {args.prom_scrapes} times "
            f"after {out['ready_after_s']} s; {out['head_series']} head series, "
            f"scrape {1000 * (out['scrape_duration_avg_s'] or 0):.0f} ms on average",
            flush=True,
        )
        body: dict[str, Any] = {"prometheus_url": server.url}
        if args.concurrency:
            body["options"] = {"concurrency": args.concurrency}
        config = providers_yaml(work / "prom.yaml", "prom", body)
        print(
            "  one cycle in PromQL mode (window: the provider's 15-minute interval) ...", flush=True
        )
        cycle = out["cycle"] = flow_cycle(config, "prom", n, cpu)
        _print_cycle("PromQL cycle", cycle, n)
        adapter, _frame = adapter_cycle(config, cpu)
        adapter["targets_per_s"] = round(n / adapter["wall_s"], 1)
        out["adapter_only"] = adapter
        out["queries"] = query_stage(server.url, cpu)
        q = out["queries"]
        print(
            f"  adapter alone: {adapter['wall_s']:.2f} s ({adapter['samples']} samples); "
            f"query stage alone: {q['queries']} queries, {q['series_returned']} series "
            f"returned, {q['failed']} failed, {q['wall_s']:.2f} s (Prometheus CPU "
            f"{q['cpu_s'].get('prometheus', 0):.1f} s)",
            flush=True,
        )
        if args.prom_later > 0:
            out["later"] = promql_later(args, server, config, n, cpu)
    finally:
        server.stop()
        cpu.others.pop("prometheus", None)
    return out


def promql_later(
    args: argparse.Namespace, server: Prometheus, config: Path, n: int, cpu: Cpu
) -> dict[str, Any]:
    """The same cycle once Prometheus holds more points per series: a real 15-minute
    window at a 15 s interval holds 60, the first cycle only a few."""
    print(
        f"  {args.prom_later:g} s later, with more points per series in the window ...", flush=True
    )
    time.sleep(args.prom_later)
    out: dict[str, Any] = {"after_s": args.prom_later}
    out["scrapes_per_target"] = server.query("min(count_over_time(up[1h]))")
    out["cycle"] = flow_cycle(config, "prom", n, cpu)
    _print_cycle(f"PromQL cycle ({out['scrapes_per_target']:.0f} scrapes/target)", out["cycle"], n)
    out["queries"] = query_stage(server.url, cpu)
    q = out["queries"]
    print(
        f"  query stage alone: {q['queries']} queries, {q['series_returned']} series, "
        f"{q['wall_s']:.2f} s (Prometheus CPU {q['cpu_s'].get('prometheus', 0):.1f} s)",
        flush=True,
    )
    return out


def query_stage(url: str, cpu: Cpu) -> dict[str, Any]:
    """The PromQL queries the adapter sends, run as it runs them; counted."""
    from datetime import timedelta

    from providers.prometheus.detect import allowed_sources
    from providers.prometheus.options import PrometheusOptions
    from providers.prometheus.promql import (
        PromQLClient,
        build_queries,
        present_sources,
        run_queries,
    )
    from providers.prometheus.series import LabelPolicy

    options = PrometheusOptions()
    policy = LabelPolicy(options.label_deployment, tuple(options.keep_labels))
    end = datetime.now(UTC)
    start = end - timedelta(seconds=900)
    client = PromQLClient(
        url, timeout=options.target_timeout_seconds, pool_size=options.concurrency
    )
    out: dict[str, Any] = {}
    try:
        with cpu.measure(out):
            wanted = allowed_sources(options.engine)
            present = client.names(start, end, wanted)
            sources = present_sources(present, wanted)
            queries = build_queries(
                present, sources, 900, policy, gauges=options.gauges, quantiles=options.quantiles
            )
            pairs, notes = asyncio.run(run_queries(client, queries, end, options.concurrency))
    finally:
        client.close()
    out.update(
        queries=len(queries),
        series_returned=len(pairs),
        failed=len(notes),
        sources=sources,
        failures=notes[:3],
    )
    return out


# -- main ------------------------------------------------------------------------------


def _print_cycle(label: str, c: dict[str, Any], n: int) -> None:
    cpu = c["cpu_s"]
    print(
        f"  {label}: {c['wall_s']:.2f} s ({c['targets_per_s']:.0f} targets/s), flow "
        f"{c['flow_state']} / provider {c['status']}; provider's own collection "
        f"{c['provider_collect_s']:.2f} s, flow overhead {c['flow_overhead_s']:.2f} s; "
        f"{c['samples_stored']} samples stored, {c['store']['instances']} of {n} targets "
        f"with samples, {c['target_notes']} target notes; CPU s: collector "
        f"{cpu['collector']:.1f}, fleet {cpu.get('sandbox', 0):.1f}, Prefect server "
        f"{cpu['prefect_server']:.1f}"
        + (f", Prometheus {cpu['prometheus']:.1f}" if "prometheus" in cpu else ""),
        flush=True,
    )


def _cores(block: dict[str, Any], name: str) -> str:
    return f"{block['cpu_s'].get(name, 0.0) / block['wall_s']:.2f}"


def machine() -> dict[str, Any]:
    return {**common_machine(), "prometheus": _prometheus_version()}


def _prometheus_version() -> str | None:
    binary = shutil.which("prometheus")
    if binary is None:
        return None
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0] if (done.stdout or done.stderr) else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="100 targets, short waits (~1 min)")
    p.add_argument("--targets", type=int, help="scrape targets (2 per replica; default 1000)")
    p.add_argument(
        "--load-rps-per-replica",
        type=float,
        default=0.05,
        help="Poisson load offered to the fleet, per replica",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="direct scrape's scrape_settle_seconds (its default, 5)",
    )
    p.add_argument("--gap", type=float, help="seconds between the direct cycles")
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="the provider's concurrency option (default: the provider's, 64)",
    )
    p.add_argument(
        "--prom-interval",
        type=float,
        help="Prometheus scrape interval, s (default 15; 5 with --quick)",
    )
    p.add_argument(
        "--prom-scrapes",
        type=int,
        default=2,
        help="scrapes of every target before the PromQL cycle",
    )
    p.add_argument(
        "--prom-later",
        type=float,
        help="then wait this long and run the PromQL cycle again with more points "
        "per series (default 120; 0 with --quick)",
    )
    p.add_argument(
        "--profile",
        choices=["auto", "always", "never"],
        default="auto",
        help="cProfile one direct collection (auto: if the 2nd cycle misses 30 s)",
    )
    p.add_argument("--top", type=int, default=20, help="functions listed by the profile")
    p.add_argument("--skip", nargs="*", default=[], choices=["direct", "prometheus"])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path, default=None, help="write results here (JSON)")
    args = p.parse_args(argv)
    if args.json is not None:
        args.json = args.json.resolve()  # before main() moves into its temporary directory
    args.targets = args.targets or (100 if args.quick else 1000)
    if args.targets < 2 or args.targets % 2:
        p.error("--targets must be an even number >= 2 (an engine and a DCGM target each)")
    args.gap = args.gap if args.gap is not None else (2.0 if args.quick else 5.0)
    args.prom_interval = args.prom_interval or (5.0 if args.quick else 15.0)
    if args.prom_later is None:
        args.prom_later = 0.0 if args.quick else 120.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = reproduce_command("collect_bench.py")
    results: dict[str, Any] = {
        "command": command,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "target_s": TARGET_S,
    }
    m = results["machine"]
    print(f"Reproduce with: {command}")
    print(
        f"machine: {m['cpus_usable']} of {m['cpus']} CPUs ({m['cpu_model']}), Python "
        f"{m['python']}, {m['prometheus']}, load average {results['load_average_start']}"
    )
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="collect-bench-") as tmp:
        work = Path(tmp)
        home = work / "collector-home"
        home.mkdir()
        for name in (
            "OPTIINFRA_CONFIG",
            "OPTIINFRA_METRICS_URL",
            "OPTIINFRA_STATE_URL",
            "OPTIINFRA_MEMORY_URL",
            "PREFECT_API_URL",
        ):
            os.environ.pop(name, None)
        os.environ.update(
            OPTIINFRA_HOME=str(home),
            PREFECT_HOME=str(work / "prefect-home"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            PREFECT_LOGGING_LEVEL="WARNING",
        )
        os.chdir(work)  # no ./providers.yaml of the developer is picked up
        results.update(run_all(args, work))
    results["seconds"] = round(time.perf_counter() - begin, 1)
    results["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


def run_all(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    replicas = args.targets // 2
    load_rps = round(args.load_rps_per_replica * replicas, 3)
    sandbox = Sandbox(work, replicas, load_rps, args.seed)
    print(
        f"\nfleet: {replicas} replicas of {MODEL} on {GPU} with DCGM = {args.targets} targets, "
        f"{load_rps:g} requests/s Poisson load, in its own process ...",
        flush=True,
    )
    start = time.perf_counter()
    try:
        state = sandbox.start()
        assert sandbox.process is not None
        out["fleet"] = {
            "replicas": replicas,
            "targets": args.targets,
            "load_rps": load_rps,
            "model": MODEL,
            "gpu": GPU,
            "start_s": round(time.perf_counter() - start, 1),
        }
        servers = [s for d in state["deployments"] for s in d["servers"]]
        urls = [s["metrics_url"] for s in servers] + [s["dcgm_url"] for s in servers]
        hostports = {
            "engines": [s["metrics_url"].split("/")[2] for s in servers],
            "dcgm": [s["dcgm_url"].split("/")[2] for s in servers],
        }
        print(f"  serving after {out['fleet']['start_s']} s", flush=True)
        cpu = Cpu({"sandbox": sandbox.process.pid})
        out["prefect"] = start_harness()
        if "direct" not in args.skip:
            print(f"\n1. direct scrape: one provider, {len(urls)} /metrics URLs", flush=True)
            out["direct"] = run_direct(args, work, urls, cpu)
        if "prometheus" not in args.skip:
            print(f"\n2. through Prometheus: scrape interval {args.prom_interval:g} s", flush=True)
            out["prometheus"] = run_promql(args, work, hostports, cpu)
        with _quiet():
            proc = psutil.Process(sandbox.process.pid)
            out["fleet"]["rss_mib"] = round(proc.memory_info().rss / 2**20)
    finally:
        stop_harness()
        sandbox.stop()
    return out


_HARNESS: list[Any] = []


def start_harness() -> dict[str, Any]:
    """``prefect_test_harness`` with heartbeats off, as the test suite runs flows."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    start = time.perf_counter()
    for manager in (
        prefect_test_harness(server_startup_timeout=90),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        manager.__enter__()
        _HARNESS.append(manager)
    seconds = round(time.perf_counter() - start, 1)
    print(
        f"  Prefect: prefect_test_harness started in {seconds} s (not in any figure below)",
        flush=True,
    )
    return {"mode": "prefect_test_harness, heartbeats off", "harness_start_s": seconds}


def stop_harness() -> None:
    while _HARNESS:
        _HARNESS.pop().__exit__(None, None, None)


def report(r: dict[str, Any]) -> None:
    print(
        f"\nsummary ({r['seconds']} s; {r['machine']['cpus_usable']} CPUs; load average "
        f"{r['load_average_start']} at start, {r['load_average_end']} at end)"
    )
    head = (
        f"{'cycle':<44} {'targets':>7} {'wall s':>7} {'targets/s':>9} {'samples':>8} "
        f"{'failed':>6} {'collector CPU s':>15}  < {TARGET_S:g} s"
    )
    print(head)
    print("-" * len(head))
    rows = []
    if "direct" in r:
        d = r["direct"]
        rows += [
            ("direct, 1st cycle (flow; incl. settle wait)", d["first_cycle"]),
            ("direct, 2nd cycle (flow; cursors)", d["second_cycle"]),
            ("direct, adapter only (cursors)", d["adapter_only"]),
        ]
    if "prometheus" in r:
        p = r["prometheus"]
        rows += [
            (f"PromQL, 1 cycle (flow; {p['scrape_interval_s']:g} s scrapes)", p["cycle"]),
            ("PromQL, adapter only", p["adapter_only"]),
        ]
        if "later" in p:
            later = p["later"]
            label = f"PromQL, +{later['after_s']:g} s ({later['scrapes_per_target']:.0f} scrapes)"
            rows.append((label, later["cycle"]))
    for label, c in rows:
        n = r["fleet"]["targets"]
        samples = c.get("samples_stored", c.get("samples"))
        if "target_status" in c:
            failed = n - c["target_status"].get("ok", 0) if "direct" in label else "-"
        else:
            failed = c["targets_failed_or_missing"]
        ok = "yes" if c["wall_s"] < TARGET_S else "NO"
        print(
            f"{label:<44} {n:>7} {c['wall_s']:>7.2f} {n / c['wall_s']:>9.0f} {samples:>8} "
            f"{failed!s:>6} {c['cpu_s']['collector']:>15.1f}  {ok}"
        )
    if "prometheus" in r:
        q = r["prometheus"]["queries"]
        p = r["prometheus"]
        print(
            f"PromQL: {q['queries']} queries, {q['series_returned']} series returned, "
            f"{q['failed']} failed, {q['wall_s']:.2f} s, at {p['scrapes_per_target']:.0f} "
            f"scrapes per target; Prometheus scraping the fleet every "
            f"{p['scrape_interval_s']:g} s used {_cores(p['while_waiting'], 'prometheus')} "
            f"cores, the fleet {_cores(p['while_waiting'], 'sandbox')}"
        )
        if "later" in p:
            q = p["later"]["queries"]
            print(
                f"PromQL +{p['later']['after_s']:g} s: {q['series_returned']} series, "
                f"{q['wall_s']:.2f} s"
            )
    print(f"Reproduce with: {r['command']}")


if __name__ == "__main__":
    raise SystemExit(main())
