"""``optiinfra serve``: run OptiInfra's scheduled deployments against a Prefect server.

Serving is Prefect's ``serve()``: this process registers the deployments (collection
now; optimize and rollout plug in through :mod:`deployments`), polls the server for
their scheduled or triggered runs, and runs each in a subprocess. It needs a Prefect
API that outlives it — ``prefect server start`` or Prefect Cloud, named by
``PREFECT_API_URL`` — because Prefect's ephemeral mode starts a private server per
process that no UI, scheduler or ``run_deployment`` in another process can see.

SIGINT or SIGTERM stops it: Prefect stops polling, pauses the schedules (so the server
does not pile up late runs nobody will execute) and the process exits 0.

Example::

    serve(build_deployments(config, config_path="/etc/optiinfra/providers.yaml"))
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Any

from optiinfra.errors import OptiInfraError

NO_API = (
    "no Prefect API configured: `optiinfra serve` needs a Prefect server that outlives it "
    "(ephemeral mode starts a private one per process, invisible to the UI and to other "
    "processes). Start one with `prefect server start` (it listens on "
    "http://127.0.0.1:4200) and set PREFECT_API_URL=http://127.0.0.1:4200/api, or "
    "`prefect config set PREFECT_API_URL=…` once"
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the scheduled deployments (collection, …) against the Prefect API in use",
        description="Register OptiInfra's deployments with the Prefect server at "
        "PREFECT_API_URL and run their scheduled and triggered runs until stopped "
        "(Ctrl-C or SIGTERM).",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="run at most N flow runs at once (default: no limit)",
    )
    p.set_defaults(handler=cmd_serve)


def prefect_api_url() -> str | None:
    """The Prefect API this process would talk to (None: ephemeral mode)."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def check_api(url: str) -> None:
    """Fail with one clear line when the server at ``url`` does not answer."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        raise OptiInfraError(
            f"the Prefect API at {url} (PREFECT_API_URL) does not answer: "
            f"{type(problem).__name__}: {problem}. Is `prefect server start` running there?"
        )


def cmd_serve(args: argparse.Namespace) -> int:
    # Offline hygiene, as for `collect`; users may still opt in by setting these.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")

    from optiinfra.runtime import load_runtime
    from providers import provider_kinds

    runtime = load_runtime(args.config, known_kinds=provider_kinds())
    url = prefect_api_url()
    if not url:
        raise OptiInfraError(NO_API)
    check_api(url)

    from deployments import build_deployments
    from flows.collect import task_runner_from_settings

    # A wrong task-runner setting (say, Ray without prefect-ray) fails here, not in
    # every scheduled run.
    task_runner_from_settings(runtime.settings)
    config_path = str(runtime.config_path.resolve()) if runtime.config_path else None
    served = build_deployments(runtime.config, config_path=config_path)
    _print_banner(url, runtime, served)

    serve(served, limit=args.limit)
    print("stopped; schedules paused until `optiinfra serve` runs again", flush=True)
    return 0


def serve(deployments: list[Any], *, limit: int | None = None) -> None:
    """Serve ``deployments`` until SIGINT or SIGTERM; the schedules are paused on the way out.

    This is ``prefect.serve()`` — a :class:`~prefect.runner.Runner` with every deployment
    added, started in this thread — with one difference: SIGTERM cancels the runner's
    task, as Ctrl-C does. Prefect 3.8's own SIGTERM handler calls ``sys.exit`` inside the
    event loop, which tears the loop down mid-poll and prints tracebacks of cancelled
    connections (every time, once a run has been executed). Cancelling the task directly,
    rather than re-raising SIGINT, also works where SIGINT is ignored (a background job
    of a shell script).
    """
    import asyncio

    from prefect.runner import Runner

    class _Runner(Runner):
        main_task: asyncio.Task[None] | None = None

        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            self._logger.info("SIGTERM received, shutting down...")
            if self.main_task is not None:
                self.main_task.get_loop().call_soon_threadsafe(self.main_task.cancel)

    runner = _Runner(pause_on_shutdown=True, limit=limit)
    for deployment in deployments:
        runner.add_deployment(deployment)

    async def run() -> None:
        runner.main_task = asyncio.current_task()
        await runner.start()

    # Ctrl-C ends asyncio.run with KeyboardInterrupt, SIGTERM with CancelledError.
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(run())


def _print_banner(url: str, runtime: Any, served: list[Any]) -> None:
    from prefect.settings import get_current_settings

    from deployments.collect import format_duration

    config = str(runtime.config_path) if runtime.config_path else "built-in default (local)"
    print(f"serving {len(served)} deployment(s) against the Prefect API at {url}")
    print(f"configuration: {config}; task runner: {_task_runner_text(runtime.settings)}")
    for deployment in served:
        schedules = [
            f"every {format_duration(s.schedule.interval)}"
            if getattr(s.schedule, "interval", None)
            else str(s.schedule)
            for s in deployment.schedules or []
        ]
        when = ", ".join(schedules) or "on demand"
        print(f"  {deployment.flow_name}/{deployment.name}: {when}")
        if deployment.description:
            print(f"    {deployment.description}")
    ui = get_current_settings().ui_url
    if ui:
        print(f"Prefect UI: {ui}/deployments")
    for deployment in served:
        print(f"trigger a run: prefect deployment run {deployment.flow_name}/{deployment.name}")
    print("stop with Ctrl-C (or SIGTERM)", flush=True)


def _task_runner_text(settings: Any) -> str:
    if settings.task_runner == "dask":
        where = settings.dask_address or (
            f"a local cluster of {settings.dask_workers or 'Dask default'} workers per run"
        )
        return f"dask ({where})"
    if settings.task_runner == "ray":
        return f"ray ({settings.ray_address or 'a local Ray instance per run'})"
    return "threads (Prefect's thread pool)"
