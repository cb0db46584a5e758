"""Fault isolation with real sockets and the real ``prometheus`` adapter: a Prometheus
that refuses connections, an exporter that answers garbage and one that accepts the
connection and never answers. The healthy provider is stored, the run is Partial, and
each failure names its provider and cause."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flows.collect import collect_flow
from tests.providers.prometheus_support import refused_url, static_server

pytestmark = pytest.mark.prefect


@contextmanager
def silent_url() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_down_garbage_and_hung_providers_fail_alone(prefect_harness: None, tmp_path: Path) -> None:
    with (
        refused_url() as down,
        static_server("<html><body>login</body></html>", "text/html") as garbage,
        silent_url() as hung,
    ):
        config = tmp_path / "providers.yaml"
        config.write_text(
            "version: 1\nproviders:\n"
            "  - name: here\n    kind: local\n"
            f"  - name: prom-down\n    kind: prometheus\n    prometheus_url: {down}\n"
            "    retries: 0\n"
            f"  - name: exporter-garbage\n    kind: prometheus\n"
            f"    metrics_urls: ['{garbage}/metrics']\n    retries: 0\n"
            f"  - name: prom-hung\n    kind: prometheus\n    prometheus_url: {hung}\n"
            # the flow cuts the provider off at 2 s; its query thread ends at its own
            # 3 s timeout (a thread cannot be cancelled), which the run then waits for
            "    timeout: 2s\n    retries: 0\n    options: {target_timeout_seconds: 3}\n"
        )
        state = collect_flow(config_path=str(config), return_state=True)
    assert state.is_completed() and state.name == "Partial"
    results = {r.provider: r for r in state.result().results}
    assert results["here"].status == "ok" and results["here"].samples > 0
    for name in ("prom-down", "exporter-garbage", "prom-hung"):
        assert results[name].status == "failed", results[name]
    assert down.removeprefix("http://") in (results["prom-down"].error or "")
    assert "text/html" in (results["exporter-garbage"].error or "")
    hung_error = (results["prom-hung"].error or "").lower()
    assert "timed out" in hung_error or "timeout" in hung_error
