"""The CLI's commands: each takes the parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from optiinfra.cli.render import table
from optiinfra.errors import ConfigError, OptiInfraError
from optiinfra.settings import get_settings


def _known_kinds() -> list[str]:
    from providers import provider_kinds

    return provider_kinds()


def cmd_init(args: argparse.Namespace) -> int:
    from optiinfra.config import write_example_config

    path = Path(args.path or args.config or "providers.yaml")
    written = write_example_config(path, force=args.force)
    print(f"wrote {written}")
    print(f"edit it, then check it with: optiinfra validate {written}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from optiinfra.config import load_config

    path = Path(args.path or args.config or get_settings().config_path())
    if not path.exists() and not (args.path or args.config):
        raise OptiInfraError(
            f"no providers.yaml found (looked for ./providers.yaml and {path}); "
            "write one with: optiinfra init"
        )
    try:
        config = load_config(path, known_kinds=_known_kinds(), check_env=not args.no_env)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue)
        count = len(exc.issues)
        print(f"{path}: {count} problem{'s' if count != 1 else ''}")
        return exc.exit_code
    enabled = [p.name for p in config.enabled_providers()]
    print(
        f"{path}: ok ({len(config.providers)} providers, {len(enabled)} enabled: "
        f"{', '.join(enabled) or 'none'}; {len(config.tenants)} tenants)"
    )
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from optiinfra.runtime import load_runtime

    # Prefect's ephemeral server otherwise records a telemetry session on start (and
    # races itself on SQLite doing so); users may still opt in by setting these.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")

    # Read and check the configuration before starting Prefect, so a typo costs
    # a fraction of a second rather than a flow run.
    runtime = load_runtime(args.config, known_kinds=_known_kinds())
    if runtime.config_path is None:
        print(
            "no providers.yaml found: using the built-in default (the local provider); "
            "write one with: optiinfra init"
        )
    from flows.collect import collect_flow, select_providers

    select_providers(runtime.config, args.provider)
    _preflight_stores(runtime)
    state = collect_flow(
        config_path=str(runtime.config_path) if runtime.config_path else None,
        providers=args.provider,
        return_state=True,
    )
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, BaseException):
        if isinstance(summary, OptiInfraError):
            raise summary
        raise OptiInfraError(f"collection flow failed: {state.message or summary}")
    print()
    print(f"collection {summary.status} — run {summary.run_id}")
    print(
        table(
            ["provider", "kind", "status", "samples", "instances", "seconds", "error"],
            [
                (r.provider, r.kind, r.status, r.samples, r.instances, r.duration_seconds, r.error)
                for r in summary.results
            ],
        )
    )
    for r in summary.results:
        for note in r.notes:
            print(f"note: {r.provider}: {note}")
    _print_stored(runtime, summary, limit=args.show)
    return 0 if summary.status == "ok" else 1


def _preflight_stores(runtime) -> None:
    """Open and migrate the stores before the flow starts.

    A wrong URL or an unwritable directory then fails here with one clear line, instead
    of as a failed task (with Prefect's traceback in the log) inside a flow run.
    """
    ts = runtime.open_timeseries()
    try:
        ts.ensure_schema()
    finally:
        ts.close()
    runtime.open_state().close()


def _print_stored(runtime, summary, *, limit: int) -> None:
    """Read back what this run stored, from the store itself."""
    from optiinfra.metrics import CANONICAL

    store = runtime.open_timeseries()
    try:
        frames = [
            store.recent_samples(
                since=summary.started_at - timedelta(seconds=1), provider=r.provider
            )
            for r in summary.results
            if r.samples
        ]
    finally:
        store.close()
    rows = [row for frame in frames for row in frame.to_dict("records")]
    print()
    print(f"stored in {store.display_url}: {len(rows)} samples from this run")
    if not rows:
        return
    rows.sort(key=lambda r: (r["provider"], r["instance"], r["metric"], str(r["labels"])))
    shown = rows[:limit] if limit > 0 else rows
    print(
        table(
            ["provider", "instance", "metric", "labels", "value", "unit"],
            [
                (
                    r["provider"],
                    r["instance"],
                    r["metric"],
                    dict(r["labels"] or {}),
                    float(r["value"]),
                    CANONICAL[r["metric"]].unit if r["metric"] in CANONICAL else "",
                )
                for r in shown
            ],
        )
    )
    if len(shown) < len(rows):
        print(f"… {len(rows) - len(shown)} more (use --show N)")


def _embedded_path(url: str) -> Path | None:
    """The local path of an embedded store URL, or None for a server URL."""
    parts = urlsplit(url)
    if parts.scheme in {"chdb", "qdrant", "sqlite"}:
        return Path(parts.path) if parts.path else None
    return None


def cmd_status(args: argparse.Namespace) -> int:
    from optiinfra.runtime import load_runtime

    runtime = load_runtime(args.config, known_kinds=_known_kinds(), check_env=False)
    print(f"config:  {runtime.config_path or 'built-in default (local provider only)'}")
    print(f"home:    {runtime.settings.home}")
    enabled = ", ".join(p.name for p in runtime.config.enabled_providers()) or "none"
    print(f"providers enabled: {enabled}")
    print()
    stores = [
        ("time series", runtime.metrics_url, _timeseries_status, "run: optiinfra collect --once"),
        ("state", runtime.state_url, _state_status, "run: optiinfra collect --once"),
        ("decision memory", runtime.memory_url, _memory_status, "made by the first outcome"),
    ]
    for label, url, describe, how in stores:
        path = _embedded_path(url)
        if path is not None and not path.exists():
            print(f"{label}: {url} — not created yet ({how})")
            continue
        try:
            print(describe(runtime))
        except OptiInfraError as exc:
            print(f"{label}: {url} — unavailable: {exc.message}")
    return 0


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items())


def _timeseries_status(runtime) -> str:
    store = runtime.open_timeseries()
    try:
        version = store.schema_version()
        counts = store.row_counts() if version else {}
    finally:
        store.close()
    return (
        f"time series: {store.display_url} — schema v{version}; rows: {_counts(counts) or 'none'}"
    )


def _state_status(runtime) -> str:
    from optiinfra.store.state import open_state

    store = open_state(runtime.state_url, migrate=False)
    try:
        version = store.schema_version()
        counts = store.row_counts() if version else {}
        runs = store.last_collection_runs(limit=5) if version else []
    finally:
        store.close()
    lines = [f"state: {store.display_url} — schema v{version}; rows: {_counts(counts) or 'none'}"]
    if runs:
        lines.append(
            table(
                ["last collections", "provider", "status", "samples", "error"],
                [
                    (
                        r.started_at.isoformat(timespec="seconds"),
                        r.provider,
                        r.status,
                        r.samples,
                        r.error,
                    )
                    for r in runs
                ],
            )
        )
    return "\n".join(lines)


def _memory_status(runtime) -> str:
    memory = runtime.open_memory()
    try:
        memory.ensure_collection()
        count = memory.count()
    finally:
        memory.close()
    return f"decision memory: {memory.display_url} — {count:,} decisions"


__all__ = ["cmd_collect", "cmd_init", "cmd_status", "cmd_validate"]
