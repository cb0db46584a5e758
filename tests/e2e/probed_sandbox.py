"""A providers.yaml for end-to-end tests that probe every server of one sandbox
deployment with the whole bundled golden set (one probe at a time, so each server's
answers are the same on every run), shared by the rollout tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from optiinfra.sandbox.quality import bundled_items
from tests.e2e.sandbox_thread import SandboxThread


def server_urls(sandbox: SandboxThread, deployment: str) -> dict[str, str]:
    """Server name -> base URL of every server of ``deployment``."""
    fleet = sandbox.fleet
    assert fleet is not None
    return {s.name: sandbox.call(lambda s=s: fleet.endpoint(s)) for s in fleet.servers[deployment]}


def probed_config(
    tmp_path: Path,
    sandbox: SandboxThread,
    deployment: str,
    model: str,
    *,
    more_lines: Sequence[str] = (),
) -> str:
    """Write the sandbox provider, one quality provider per server of ``deployment``,
    then ``more_lines`` (top-level YAML) to ``tmp_path/providers.yaml``; its path."""
    assert sandbox.fleet is not None and sandbox.fleet.control is not None
    golden = tmp_path / "golden.jsonl"
    rows = [
        {"id": q.id, "prompt": q.question, "reference": q.answer, "aliases": list(q.aliases)}
        for q in bundled_items()
    ]
    golden.write_text("".join(json.dumps(row) + "\n" for row in rows))
    lines = [
        "version: 1",
        "providers:",
        "  - name: sandbox",
        "    kind: sandbox",
        "    interval: 20s",
        f"    options: {{control_url: 'http://127.0.0.1:{sandbox.fleet.control.port}'}}",
    ]
    for name, url in server_urls(sandbox, deployment).items():
        lines += [
            f"  - name: quality-{name}",
            "    kind: quality",
            "    timeout: 120s",
            "    quality:",
            f"      golden_set: {golden}",
            f"      probes_per_run: {len(bundled_items())}",
            "      concurrency: 1",
            "      targets:",
            f"        - {{deployment: {deployment}, base_url: '{url}/v1', model: {model}}}",
        ]
    path = tmp_path / "providers.yaml"
    path.write_text("\n".join([*lines, *more_lines]) + "\n")
    return str(path)
