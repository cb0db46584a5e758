"""A real Prometheus server (Debian's ``prometheus`` binary) for end-to-end tests.

Started on a free loopback port with a scrape config written here, a 1 s scrape
interval and its own TSDB directory; stopped (and its directory left to pytest's tmp
cleanup) when the context exits.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_config(jobs: dict[str, Sequence[str]], interval: str = "1s") -> str:
    """A prometheus.yml scraping ``host:port`` targets, one job per key."""
    lines = [
        "global:",
        f"  scrape_interval: {interval}",
        f"  evaluation_interval: {interval}",
        "scrape_configs:",
    ]
    for job, targets in jobs.items():
        lines += [
            f"  - job_name: {job}",
            "    static_configs:",
            "      - targets: [" + ", ".join(f"'{t}'" for t in targets) + "]",
        ]
    return "\n".join(lines) + "\n"


@contextmanager
def prometheus(
    workdir: Path, jobs: dict[str, Sequence[str]], timeout: float = 30.0
) -> Iterator[str]:
    """Run Prometheus scraping ``jobs``; yields its base URL once it is ready."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("the prometheus binary is missing: apt-get install prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(scrape_config(jobs))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {process.returncode}: "
                    + (workdir / "prometheus.log").read_text()[-2000:]
                )
            try:
                if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready within {timeout} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_for_targets(url: str, count: int, timeout: float = 30.0) -> None:
    """Until ``count`` targets are up and scraped at least twice (so rates exist)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/api/v1/query", params={"query": "count(up == 1)"}).json()
        result = body.get("data", {}).get("result", [])
        if result and float(result[0]["value"][1]) >= count:
            scrapes = httpx.get(
                f"{url}/api/v1/query",
                params={"query": "min(count_over_time(up[1m]))"},
            ).json()["data"]["result"]
            if scrapes and float(scrapes[0]["value"][1]) >= 2:
                return
        time.sleep(0.5)
    raise RuntimeError(f"fewer than {count} targets up after {timeout} s")
