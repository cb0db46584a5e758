"""How much sandbox fleet one process sustains on this machine, and how right its model is.

Three measurements, printed as they go:

1. **Servers.** For each ``--sizes`` N, a fresh process starts a fleet of N replicas of
   one small deployment (Llama-3.2-1B on H100, DCGM exporter on) with ``Fleet.start()``
   and reports start time, resident memory and open descriptors; scrapes every engine
   ``/metrics`` and DCGM ``/metrics`` once (in that process, ``--scrape-concurrency`` at
   a time, a connection per scrape) and checks each
   answers 200 with its format's metric names; then, for ``--scrape-cycles`` x
   ``--scrape-interval`` s, serves a Poisson load of ``--bg-rps`` requests/s in all
   (the sandbox's own ``LoadGenerator`` in the same process, round-robin over all
   replicas) while a second process scrapes both ``/metrics`` of every server once per
   interval, spread evenly over it as Prometheus staggers its targets. Meanwhile a
   probe sleeping ``--lag-interval`` s measures the event loop's lag. A size is
   *sustained* when every scrape and >= 99 % of requests succeed, loop lag p99 <
   ``--lag-bound-ms`` and the scraper gets >= 95 % of the scrapes per second it asks for.
2. **Requests per second.** A fleet of ``--rps-replicas`` replicas of the same fast
   deployment, offered Poisson load at each of ``--rates`` (``--prompt-words`` /
   ``--output-tokens`` mean lengths, non-streaming) for ``--rps-seconds``: first by a
   ``LoadGenerator`` in the fleet's own process and event loop (the "one process"
   figure), then by one in a second process (the server side's capacity apart from the
   client's). For each rate: achieved rps, ok rate, client p50/p95 latency against the
   simulated (ground-truth) end-to-end latency the engines recorded, loop lag, CPU. A
   rate is *sustained* with >= 99 % ok, achieved >= 95 % of offered and client p95 <=
   2 x simulated p95 + 50 ms. ``--stream-rate`` adds one streaming run; ``--profile-rate``
   one more second-process run with the server side under cProfile (own time by module).

Loop lag is mostly the garbage collector's full collections, which walk every server's
objects: the probe times them too, and ``--gc-freeze`` measures the fleet with
``gc.freeze()`` after ``Fleet.start()`` (not what the sandbox does today).
3. **Argonne error.** ``compare_with_argonne(engine_run_batch)`` (the engine simulator
   the servers run) and the default static-batch model: rows, median and p90 absolute
   relative error of latency and throughput, overall, by GPU and by table.

Other work on the machine skews the figures: the load average is printed at start and end.

Example (a one-minute smoke run)::

    .venv/bin/python benchmarks/sandbox_bench.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import machine as common_machine
from benchmarks.machine import profile_area, reproduce_command
from optiinfra.sandbox.fleet import Fleet
from optiinfra.sandbox.load import LoadGenerator, schedule
from optiinfra.sandbox.spec import DeploymentSpec, EngineArgs, FleetSpec, LoadSpec, SandboxSettings

MODEL = "meta-llama/Llama-3.2-1B"
GPU = "H100"
ENGINE_MARK, DCGM_MARK = b"vllm:", b"DCGM_FI_"


# -- measuring tools -------------------------------------------------------------------


def fleet_spec(replicas: int, *, dcgm: bool, seed: int) -> FleetSpec:
    deployment = DeploymentSpec(
        name="bench",
        model=MODEL,
        gpu=GPU,
        replicas=replicas,
        dcgm=dcgm,
        engine_args=EngineArgs(max_model_len=8192),
    )
    return FleetSpec(sandbox=SandboxSettings(seed=seed), deployments=[deployment])


def quantiles(values: list[float], scale: float = 1.0) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    a = np.asarray(values) * scale
    return {
        "p50": round(float(np.quantile(a, 0.5)), 4),
        "p95": round(float(np.quantile(a, 0.95)), 4),
        "p99": round(float(np.quantile(a, 0.99)), 4),
        "max": round(float(a.max()), 4),
    }


class LagProbe:
    """Sleeps ``interval`` s over and over; how much later than asked it wakes is the time
    the event loop spent on everything else in one go (what a request waits for). Also
    times the garbage collector's pauses, the usual cause of the longest lags."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self.gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._gc_start = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lags.append(time.perf_counter() - start - self.interval)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_pauses[info["generation"]].append(time.perf_counter() - self._gc_start)

    def __enter__(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        gc.callbacks.remove(self._on_gc)

    def summary_ms(self) -> dict[str, Any]:
        full = self.gc_pauses[2]
        return {
            **quantiles(self.lags, 1000.0),
            "gc_ms_total": round(1000 * sum(sum(v) for v in self.gc_pauses.values()), 1),
            "gc_full_collections": len(full),
            "gc_full_max_ms": round(1000 * max(full), 1) if full else None,
        }


class CpuMeter:
    """CPU seconds this process used over a block, as a share of one core."""

    def __enter__(self) -> CpuMeter:
        self._proc = psutil.Process()
        t = self._proc.cpu_times()
        self._cpu, self._wall = t.user + t.system, time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        t = self._proc.cpu_times()
        self.cpu_s = t.user + t.system - self._cpu
        self.wall_s = time.perf_counter() - self._wall
        self.core_share = round(self.cpu_s / self.wall_s, 3) if self.wall_s else 0.0


class Scraper:
    """GET /metrics over one kept-alive connection per target (as Prometheus does), or a
    connection per scrape with ``keep=False``; a plain asyncio client, so that scraping
    thousands of targets measures the servers rather than the client."""

    def __init__(self, *, keep: bool = True, timeout_s: float = 10.0) -> None:
        self.keep = keep
        self.timeout_s = timeout_s
        self._conns: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

    async def get(self, host: str, port: int) -> tuple[int, bytes]:
        for _attempt in (0, 1):  # a kept connection the server closed: reconnect once
            conn = self._conns.pop(port, None)
            fresh = conn is None
            reader, writer = conn or await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                if fresh:
                    raise
                continue
            except BaseException:  # a timeout or cancellation: never keep it
                writer.close()
                raise
            if self.keep:
                self._conns[port] = (reader, writer)
            else:
                writer.close()
            return int(head.split(b" ", 2)[1]), body
        raise ConnectionError(f"port {port} closed a fresh connection")

    async def check(self, host: str, port: int, marker: str) -> tuple[str | None, int]:
        """Scrape one target: (None, bytes) when it answered 200 with ``marker``, else
        (why not, bytes)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                status, body = await self.get(host, port)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:  # timeouts too
            return f"{port}: {type(exc).__name__}: {exc}", 0
        if status != 200 or marker.encode() not in body:
            return f"{port}: status {status}, {len(body)} bytes", len(body)
        return None, len(body)

    async def scrape_all(self, targets: list[list[Any]], concurrency: int) -> dict[str, Any]:
        """Scrape every ``[host, port, marker]`` once, as fast as ``concurrency`` allows."""
        slots = asyncio.Semaphore(concurrency)

        async def one(host: str, port: int, marker: str) -> tuple[str | None, int]:
            async with slots:
                return await self.check(host, port, marker)

        start = time.perf_counter()
        results = await asyncio.gather(*(one(*t) for t in targets))
        failures = [f for f, _n in results if f is not None]
        return {
            "seconds": round(time.perf_counter() - start, 3),
            "targets": len(targets),
            "ok": len(targets) - len(failures),
            "failures": failures[:5],
            "mean_bytes": round(sum(n for _f, n in results) / max(1, len(results))),
        }

    def close(self) -> None:
        for _reader, writer in self._conns.values():
            writer.close()
        self._conns.clear()


def scrape_targets(fleet: Fleet) -> list[list[Any]]:
    host = fleet.settings.host
    targets: list[list[Any]] = []
    for servers in fleet.servers.values():
        for s in servers:
            targets.append([host, s.port, ENGINE_MARK.decode()])
            if s.dcgm_port is not None:
                targets.append([host, s.dcgm_port, DCGM_MARK.decode()])
    return targets


def endpoints(fleet: Fleet) -> list[str]:
    return [fleet.endpoint(s) for servers in fleet.servers.values() for s in servers]


def poisson(rps: float, seconds: float, prompt: int, output: int, seed: int) -> Any:
    spec = LoadSpec(kind="poisson", rps=rps, prompt_tokens=prompt, output_tokens=output)
    return schedule(spec, seconds, seed=seed)


def load_figures(summary: Any) -> dict[str, Any]:
    out = asdict(summary)
    for key, value in out.items():
        if isinstance(value, float):
            out[key] = round(value, 4)
    return out


# -- child processes: python sandbox_bench.py --worker KIND < job.json ----------------------


async def spawn(kind: str, job: dict[str, Any], timeout_s: float = 600.0) -> dict[str, Any]:
    """Run a worker in a new process (its progress goes to our stderr); its JSON result."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, _ = await proc.communicate(json.dumps(job).encode())
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"worker {kind} took more than {timeout_s:g} s; killed") from None
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} failed with exit status {proc.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1])


async def worker_servers(job: dict[str, Any]) -> dict[str, Any]:
    """One fleet size, in this (fresh) process: start, scrape once, serve a light load."""
    n = job["replicas"]
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    fleet = Fleet(fleet_spec(n, dcgm=True, seed=job["seed"]))
    start = time.perf_counter()
    await fleet.start()
    out: dict[str, Any] = {"replicas": n, "start_s": round(time.perf_counter() - start, 3)}
    if job["gc_freeze"]:
        gc.freeze()  # the fleet's objects leave the collector's view: short full collections
    out["rss_mib"] = round(proc.memory_info().rss / 2**20, 1)
    out["rss_per_server_kib"] = round((proc.memory_info().rss - rss0) / n / 1024, 1)
    out["open_fds"] = proc.num_fds()
    try:
        targets = scrape_targets(fleet)
        scraper = Scraper(keep=False)  # both ends in this process: do not hold 2 fds each
        out["scrape_once"] = await scraper.scrape_all(targets, job["scrape_concurrency"])
        scraper.close()
        rps, seconds = job["bg_rps"], job["scrape_cycles"] * job["scrape_interval"]
        plan = poisson(rps, seconds, job["prompt_words"], job["output_tokens"], n)
        gen = LoadGenerator(endpoints(fleet), MODEL, keep_records=True)
        scrape_job = {
            "targets": targets,
            "interval": job["scrape_interval"],
            "cycles": job["scrape_cycles"],
            "concurrency": job["scrape_concurrency"],
        }
        with LagProbe(job["lag_interval"]) as probe, CpuMeter() as cpu:
            result, scrapes = await asyncio.gather(gen.run(plan), spawn("scrape", scrape_job))
        out["background"] = {
            "offered_rps": round(rps, 2),
            "load": load_figures(result.summary()),
            "scrapes": scrapes,
            "loop_lag_ms": probe.summary_ms(),
            "server_process_core_share": cpu.core_share,
        }
    finally:
        start = time.perf_counter()
        await fleet.stop()
        out["stop_s"] = round(time.perf_counter() - start, 3)
    return out


async def worker_scrape(job: dict[str, Any]) -> dict[str, Any]:
    """Scrape every target once per ``interval`` s for ``cycles`` intervals, the targets'
    scrapes spread evenly over the interval (as Prometheus staggers its targets)."""
    scraper = Scraper()
    targets, interval, cycles = job["targets"], job["interval"], job["cycles"]
    gap = interval / len(targets)
    slots = asyncio.Semaphore(job["concurrency"])
    latencies: list[float] = []
    failures: list[str] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(target: list[Any], due: float) -> None:
        async with slots:
            failure, _bytes = await scraper.check(*target)
        latencies.append(time.perf_counter() - due)  # a wait for a free slot included
        if failure is not None:
            failures.append(failure)

    total = cycles * len(targets)
    with CpuMeter() as cpu:
        begin = time.perf_counter()
        for k in range(total):
            due = begin + k * gap
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(targets[k % len(targets)], due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    scraper.close()
    return {
        "cycles": cycles,
        "offered_scrapes_per_s": round(len(targets) / interval, 1),
        "scrapes_per_s": round(total / max(cpu.wall_s, cycles * interval), 1),
        "scrape_latency_ms": quantiles(latencies, 1000.0),
        "ok": total - len(failures),
        "scraped": total,
        "failures": failures[:5],
        "scraper_core_share": cpu.core_share,
    }


async def worker_load(job: dict[str, Any]) -> dict[str, Any]:
    """A load generator on its own: (a share of) the client side of a second-process run."""
    plan = poisson(
        job["rps"], job["seconds"], job["prompt_words"], job["output_tokens"], job["seed"]
    )
    gen = LoadGenerator(
        job["urls"],
        MODEL,
        concurrency=job["concurrency"],
        max_keepalive=job["keepalive"],
        stream=job["stream"],
    )
    with CpuMeter() as cpu:
        result = await gen.run(plan)
    latencies = [r.latency_s for r in result.records if r.outcome == "ok" and r.latency_s]
    return {
        "load": load_figures(result.summary()),
        "latencies": [round(v, 5) for v in latencies],
        "client_core_share": cpu.core_share,
    }


def merge_loads(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of several client processes' runs (latency quantiles pooled)."""
    loads = [p["load"] for p in parts]
    outcomes = {k: sum(x["outcomes"][k] for x in loads) for k in loads[0]["outcomes"]}
    requests = sum(x["requests"] for x in loads)
    pooled = quantiles([v for p in parts for v in p["latencies"]])
    return {
        "requests": requests,
        "ok": outcomes["ok"],
        "ok_rate": round(outcomes["ok"] / requests, 4) if requests else 0.0,
        "outcomes": outcomes,
        "offered_rps": round(sum(x["offered_rps"] for x in loads), 2),
        "achieved_rps": round(sum(x["achieved_rps"] for x in loads), 2),
        "latency_p50_s": pooled["p50"],
        "latency_p95_s": pooled["p95"],
        "max_lag_s": max(x["max_lag_s"] for x in loads),
        "clients": len(parts),
    }


WORKERS = {"servers": worker_servers, "scrape": worker_scrape, "load": worker_load}


def run_worker(kind: str) -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = asyncio.run(WORKERS[kind](json.loads(sys.stdin.read())))
    print(json.dumps(result))
    return 0


# -- part 1: servers -------------------------------------------------------------------


def run_servers(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for n in args.sizes:
        if 4 * n + 1024 > hard:  # two listeners and two scraped connections per replica
            print(f"  {n} replicas: skipped, needs ~{4 * n} descriptors (limit {hard})")
            continue
        job = {
            "replicas": n,
            "seed": args.seed,
            "scrape_concurrency": args.scrape_concurrency,
            "scrape_interval": args.scrape_interval,
            "scrape_cycles": args.scrape_cycles,
            "bg_rps": args.bg_rps,
            "prompt_words": args.prompt_words,
            "output_tokens": args.output_tokens,
            "lag_interval": args.lag_interval,
            "gc_freeze": args.gc_freeze,
        }
        seconds = args.scrape_cycles * args.scrape_interval
        row = asyncio.run(spawn("servers", job, timeout_s=3 * seconds + 120))
        row["sustained"] = sustained_size(row, args)
        rows.append(row)
        bg = row["background"]
        gc_max = bg["loop_lag_ms"]["gc_full_max_ms"]
        print(
            f"  {n:5d} replicas: start {row['start_s']:.2f} s, RSS {row['rss_mib']:.0f} MiB "
            f"({row['rss_per_server_kib']:.0f} KiB/server), scrape of {2 * n} targets "
            f"{row['scrape_once']['seconds']:.2f} s ({row['scrape_once']['ok']} ok); under "
            f"load: loop lag p99 {bg['loop_lag_ms']['p99']:.1f} ms (max "
            f"{bg['loop_lag_ms']['max']:.0f}; longest full GC {_ms(gc_max and gc_max / 1000)} ms), "
            f"{bg['scrapes']['scrapes_per_s']:.0f} of {bg['scrapes']['offered_scrapes_per_s']:.0f}"
            f" scrapes/s (p99 {bg['scrapes']['scrape_latency_ms']['p99']:.0f} ms), requests ok "
            f"{bg['load']['ok_rate']:.3f}, server CPU {bg['server_process_core_share']:.0%} "
            f"-> {'OK' if row['sustained'] else 'NOT'}"
        )
    return rows


def sustained_size(row: dict[str, Any], args: argparse.Namespace) -> bool:
    bg = row["background"]
    once = row["scrape_once"]
    scrapes = bg["scrapes"]
    return bool(
        once["ok"] == once["targets"]
        and scrapes["ok"] == scrapes["scraped"]
        and scrapes["scrapes_per_s"] >= 0.95 * scrapes["offered_scrapes_per_s"]
        and (bg["load"]["requests"] == 0 or bg["load"]["ok_rate"] >= 0.99)
        and (bg["loop_lag_ms"]["p99"] or 0.0) < args.lag_bound_ms
    )


# -- part 2: requests per second -------------------------------------------------------


def simulated_e2e(fleet: Fleet, since: float) -> list[float]:
    """End-to-end latencies the engines recorded (ground truth) for requests ended after
    ``since`` (the loop clock): the same records ``/sandbox/truth`` summarises."""
    return [
        r.e2e_seconds
        for servers in fleet.servers.values()
        for s in servers
        for t, r in s.engine.truth.recent
        if t >= since and r.finish_reason != "abort"
    ]


async def one_rate(
    fleet: Fleet, args: argparse.Namespace, rate: float, mode: str, *, stream: bool = False
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    since = loop.time()
    row: dict[str, Any] = {"mode": mode, "offered_rps": rate, "stream": stream}
    with LagProbe(args.lag_interval) as probe, CpuMeter() as cpu:
        if mode == "in-process":
            gen = LoadGenerator(
                endpoints(fleet),
                MODEL,
                concurrency=args.concurrency,
                max_keepalive=args.keepalive,
                stream=stream,
            )
            plan = poisson(rate, args.rps_seconds, args.prompt_words, args.output_tokens, 1)
            row["load"] = load_figures((await gen.run(plan)).summary())
        else:
            jobs = [
                {
                    "urls": endpoints(fleet),
                    "rps": rate / args.clients,
                    "seconds": args.rps_seconds,
                    "prompt_words": args.prompt_words,
                    "output_tokens": args.output_tokens,
                    "concurrency": args.concurrency,
                    "keepalive": args.client_keepalive,
                    "stream": stream,
                    "seed": k + 1,
                }
                for k in range(args.clients)
            ]
            parts = await asyncio.gather(*(spawn("load", job) for job in jobs))
            row["load"] = merge_loads(parts)
            row["client_core_share"] = [p["client_core_share"] for p in parts]
    row["server_process_core_share"] = cpu.core_share
    row["loop_lag_ms"] = probe.summary_ms()
    row["simulated_e2e_s"] = quantiles(simulated_e2e(fleet, since))
    load, sim = row["load"], row["simulated_e2e_s"]
    row["sustained"] = bool(
        load["ok_rate"] >= 0.99
        and load["achieved_rps"] >= 0.95 * load["offered_rps"]
        and load["latency_p95_s"] is not None
        and sim["p95"] is not None
        and load["latency_p95_s"] <= 2 * sim["p95"] + 0.05
    )
    print(
        f"  {mode:>12} {rate:7.0f} rps{' (stream)' if stream else ''}: achieved "
        f"{load['achieved_rps']:7.1f}, ok {load['ok_rate']:.3f}, client p50/p95 "
        f"{_ms(load['latency_p50_s'])}/{_ms(load['latency_p95_s'])} ms vs simulated "
        f"{_ms(sim['p50'])}/{_ms(sim['p95'])} ms, loop lag p99 {row['loop_lag_ms']['p99']:.0f} ms"
        f" (GC {row['loop_lag_ms']['gc_ms_total']:.0f} ms), "
        f"CPU server {cpu.core_share:.0%}"
        + "".join(f" client {c:.0%}" for c in row.get("client_core_share", []))
        + f" -> {'OK' if row['sustained'] else 'NOT'}"
    )
    return row


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


async def run_rps(args: argparse.Namespace) -> dict[str, Any]:
    fleet = Fleet(fleet_spec(args.rps_replicas, dcgm=False, seed=args.seed))
    await fleet.start()
    if args.gc_freeze:
        gc.freeze()
    out: dict[str, Any] = {"replicas": args.rps_replicas, "runs": []}
    try:
        for mode in ("in-process", "second-process"):
            for rate in args.rates:
                row = await one_rate(fleet, args, rate, mode)
                out["runs"].append(row)
                if not row["sustained"]:
                    break  # saturated: higher rates only take longer to say so
            ok = [r["offered_rps"] for r in out["runs"] if r["mode"] == mode and r["sustained"]]
            out[f"max_sustained_rps_{mode}"] = max(ok) if ok else None
        if args.stream_rate:
            out["stream"] = await one_rate(fleet, args, args.stream_rate, "in-process", stream=True)
        if args.profile_rate not in (None, "0", 0):
            rate = args.profile_rate
            if rate == "auto":  # the saturation point: the first rate not sustained
                runs = [r for r in out["runs"] if r["mode"] == "second-process"]
                rate = next((r["offered_rps"] for r in runs if not r["sustained"]), args.rates[-1])
            out["profile"] = await profile_server(fleet, args, float(rate))
    finally:
        await fleet.stop()
    return out


async def profile_server(fleet: Fleet, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    """The server process under cProfile while a second process offers ``rate``."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        row = await one_rate(fleet, args, rate, "second-process")
    finally:
        profiler.disable()
    if args.profile_out:
        profiler.dump_stats(str(args.profile_out))
    stats = pstats.Stats(profiler, stream=io.StringIO()).stats  # type: ignore[attr-defined]
    by_area: dict[str, float] = {}
    top = []
    idle = 0.0
    for (filename, line, func), (_cc, calls, tottime, cumtime, _) in stats.items():
        if "epoll" in func:  # the loop waiting for sockets and timers: idle, not work
            idle += tottime
            continue
        area = profile_area(filename)
        by_area[area] = by_area.get(area, 0.0) + tottime
        top.append((tottime, cumtime, calls, f"{area}:{line}({func})"))
    total = sum(by_area.values())
    top.sort(reverse=True)
    areas = sorted(by_area.items(), key=lambda kv: -kv[1])
    print(
        f"  profile of the server process: {total:.1f} s busy (+{idle:.1f} s in epoll), "
        "share of busy time by area (cProfile inflates many small Python calls):"
    )
    for area, seconds in areas[:14]:
        print(f"    {seconds / total:6.1%}  {area}")
    print("  top functions by own time (own s, cumulative s, calls):")
    for tottime, cumtime, calls, name in top[:20]:
        print(f"    {tottime:7.2f} {cumtime:7.2f} {calls:9d}  {name}")
    return {
        "run": row,
        "profiled_busy_s": round(total, 2),
        "profiled_epoll_wait_s": round(idle, 2),
        "own_time_share_by_area": {a: round(s / total, 4) for a, s in areas[:20]},
        "top_functions": [
            {"function": n, "own_s": round(t, 3), "cumulative_s": round(c, 3), "calls": k}
            for t, c, k, n in top[:30]
        ],
    }


# -- part 3: the model against the Argonne tables --------------------------------------


def run_argonne() -> dict[str, Any]:
    from optiinfra.sandbox.calibration import compare_with_argonne, engine_run_batch, summarize

    out: dict[str, Any] = {}
    for name, run_batch in (("engine_simulator", engine_run_batch), ("static_batch", None)):
        start = time.perf_counter()
        frame = compare_with_argonne(run_batch)
        part: dict[str, Any] = {"seconds": round(time.perf_counter() - start, 1)}
        part["all"] = _pct(summarize(frame))
        for key in ("gpu", "table"):
            part[f"by_{key}"] = {str(v): _pct(summarize(g)) for v, g in frame.groupby(key)}
        out[name] = part
        print(f"  {name} ({part['seconds']} s):")
        tables = [(f"table {t}", v) for t, v in part["by_table"].items()]
        for label, s in [("all rows", part["all"]), *part["by_gpu"].items(), *tables]:
            print(
                f"    {label:>16}: {s['rows']:4d} rows, latency {s['latency_median']:.1f} % / "
                f"{s['latency_p90']:.1f} %, throughput {s['throughput_median']:.1f} % / "
                f"{s['throughput_p90']:.1f} % (median / p90 |relative error|)"
            )
    return out


def _pct(s: dict[str, float]) -> dict[str, Any]:
    return {
        "rows": int(s["rows"]),
        "latency_median": round(100 * s["latency_median_abs_error"], 2),
        "latency_p90": round(100 * s["latency_p90_abs_error"], 2),
        "throughput_median": round(100 * s["throughput_median_abs_error"], 2),
        "throughput_p90": round(100 * s["throughput_p90_abs_error"], 2),
    }


# -- main ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {**common_machine(), "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, short runs (~1 min)")
    p.add_argument("--sizes", type=int, nargs="+", help="fleet sizes (replicas)")
    p.add_argument("--bg-rps", type=float, default=5.0, help="background load, whole fleet")
    p.add_argument("--scrape-cycles", type=int, help="scrape intervals of the loaded phase")
    p.add_argument("--scrape-interval", type=float, help="s between full scrapes")
    p.add_argument("--scrape-concurrency", type=int, default=64)
    p.add_argument("--lag-interval", type=float, default=0.02, help="loop-lag probe period")
    p.add_argument("--lag-bound-ms", type=float, default=100.0)
    p.add_argument("--rps-replicas", type=int, default=20)
    p.add_argument("--rates", type=float, nargs="+", help="offered requests/s, ascending")
    p.add_argument("--rps-seconds", type=float, help="length of each rate's run")
    p.add_argument("--prompt-words", type=int, default=64)
    p.add_argument("--output-tokens", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=512, help="generator's in-flight bound")
    p.add_argument(
        "--keepalive",
        type=int,
        default=16,
        help="in-process generator's kept connections (16: LoadGenerator's and Fleet's default)",
    )
    p.add_argument(
        "--client-keepalive",
        type=int,
        default=64,
        help="kept connections of each second-process client (>= replicas: one per server)",
    )
    p.add_argument(
        "--clients", type=int, default=2, help="client processes of a second-process run"
    )
    p.add_argument("--stream-rate", type=float, help="one streaming run at this rate (0: none)")
    p.add_argument(
        "--profile-rate",
        default=None,
        help="one more second-process run at this rate with the server side under cProfile "
        "('auto', the default without --quick: the first rate the second-process sweep did "
        "not sustain; 0: none)",
    )
    p.add_argument("--profile-out", type=Path, default=None, help="write the pstats here")
    p.add_argument("--skip", nargs="*", default=[], choices=["servers", "rps", "argonne"])
    p.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after Fleet.start() (not what the sandbox does: a proposed change)",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path, default=None, help="write results here (JSON)")
    args = p.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ([50, 200] if quick else [100, 500, 1000, 2000, 4000])
    args.scrape_cycles = args.scrape_cycles or (2 if quick else 3)
    full_rates = [50, 100, 200, 300, 400, 500, 600, 800, 1000, 1200]
    args.rates = args.rates or ([25, 100, 200] if quick else full_rates)
    args.rps_seconds = args.rps_seconds or (4.0 if quick else 10.0)
    if args.profile_rate is None and not quick:
        args.profile_rate = "auto"
    if args.stream_rate is None:
        args.stream_rate = 25.0 if quick else 100.0
    args.scrape_interval = args.scrape_interval or (3.0 if quick else 10.0)
    return args


def main(argv: list[str] | None = None) -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        return run_worker(sys.argv[2])
    args = parse_args(argv)
    command = reproduce_command("sandbox_bench.py")
    results: dict[str, Any] = {
        "command": command,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "deployment": {"model": MODEL, "gpu": GPU},
    }
    m = results["machine"]
    print(f"Reproduce with: {command}")
    print(
        f"machine: {m['cpus_usable']} of {m['cpus']} CPUs ({m['cpu_model']}), Python "
        f"{m['python']}, load average {results['load_average_start']}"
    )
    begin = time.perf_counter()
    if "servers" not in args.skip:
        print(
            f"\n1. servers: sizes {args.sizes}, each in a fresh process; "
            f"{args.scrape_cycles} x {args.scrape_interval:g} s of {args.bg_rps:g} requests/s "
            "+ every server's two /metrics scraped per interval by a second process"
        )
        results["servers"] = run_servers(args)
        ok = [r["replicas"] for r in results["servers"] if r["sustained"]]
        results["max_sustained_servers"] = max(ok) if ok else None
    if "rps" not in args.skip:
        print(
            f"\n2. requests per second: {args.rps_replicas} replicas of {MODEL} on {GPU}, "
            f"~{args.prompt_words} prompt words, ~{args.output_tokens} output tokens, "
            f"{args.rps_seconds:g} s per rate"
        )
        results["rps"] = asyncio.run(run_rps(args))
    if "argonne" not in args.skip:
        print("\n3. step-time model against the Argonne LLM-Inference-Bench tables")
        results["argonne"] = run_argonne()
    results["seconds"] = round(time.perf_counter() - begin, 1)
    results["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    report(results, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\nsummary ({r['seconds']} s, {r['machine']['cpus_usable']} CPUs; load average "
        f"{r['load_average_start']} at start, {r['load_average_end']} at end)"
    )
    if "servers" in r:
        best = r["max_sustained_servers"]
        tried = [row["replicas"] for row in r["servers"]]
        print(
            f"servers one process sustains: {_at_least(best, tried)} (tried {tried}; "
            f"every scrape and >= 99 % of requests ok, loop lag p99 < {args.lag_bound_ms:g} ms, "
            f">= 95 % of the scrapes/s asked for)"
        )
    if "rps" in r:
        rps = r["rps"]
        print(
            f"requests/s sustained, {rps['replicas']} replicas: "
            f"{_at_least(rps['max_sustained_rps_in-process'], _tried(rps, 'in-process'))} with "
            "the load generator in the same process; "
            f"{_at_least(rps['max_sustained_rps_second-process'], _tried(rps, 'second-process'))}"
            f" from {args.clients} other processes (>= 99 % ok, "
            "achieved >= 95 % of offered, client p95 <= 2 x simulated p95 + 50 ms)"
        )
    if "argonne" in r:
        s = r["argonne"]["engine_simulator"]["all"]
        print(
            f"model vs Argonne ({s['rows']} rows, engine simulator): latency "
            f"{s['latency_median']} % median / {s['latency_p90']} % p90; throughput "
            f"{s['throughput_median']} % / {s['throughput_p90']} % (|relative error|)"
        )
    print(f"Reproduce with: {r['command']}")


def _tried(rps: dict[str, Any], mode: str) -> list[float]:
    return [run["offered_rps"] for run in rps["runs"] if run["mode"] == mode]


def _at_least(best: float | None, tried: list[float]) -> str:
    """The best figure, marked as a lower bound when it is the largest one tried."""
    if best is None:
        return f"none of {tried}"
    return f"at least {best:g} (the largest tried)" if best == max(tried) else f"{best:g}"


if __name__ == "__main__":
    raise SystemExit(main())
