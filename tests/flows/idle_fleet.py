"""Idle deployments written straight into the time-series store, so the optimize flow
has plans to ask about without a sandbox or a collection (seconds, not minutes), and
the optimize flow run in the background so a test can answer its paused run.

Each deployment served nothing over the last ``minutes`` minutes on one L4 at a known
price: the cost agent proposes scaling it to zero.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from prefect.states import State
from sqlmodel import col, select

from flows.optimize import OptimizeSummary, optimize_flow
from optiinfra.models import Instance, Sample
from optiinfra.runtime import load_runtime
from optiinfra.store.state import Plan, PlanStatus

#: Engine metrics that say "nobody is calling": all zero.
_IDLE_METRICS = (
    "request_success_per_second",
    "requests_running",
    "requests_waiting",
    "generation_tokens_per_second",
)


def write_config(directory: Path) -> str:
    """A providers.yaml whose idle threshold the seeded window passes."""
    path = directory / "providers.yaml"
    path.write_text("version: 1\noptimize: {idle_min_observed: 5m}\n")
    return str(path)


def seed_idle(config_path: str, deployments: tuple[str, ...], *, minutes: int = 20) -> None:
    """Write ``minutes`` of idle samples and inventory for each deployment, ending now."""
    now = datetime.now(UTC).replace(microsecond=0)
    samples: list[Sample] = []
    inventory: list[Instance] = []
    for name in deployments:
        instance = f"{name}-0"
        labels = {
            "deployment": name,
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "stateless": "true",
            "engine_args": json.dumps({"max_num_seqs": 64}),
            "cloud": "aws",
        }
        for m in range(minutes, -1, -1):
            ts = now - timedelta(minutes=m)
            samples += [
                Sample(ts=ts, provider="fleet", instance=instance, deployment=name,
                       engine="vllm", metric=metric, value=0.0)
                for metric in _IDLE_METRICS
            ]  # fmt: skip
            if m % 5 == 0:
                inventory.append(
                    Instance(ts=ts, provider="fleet", instance=instance, region="us-east-1",
                             instance_type="g6.xlarge", gpu_model="L4", gpu_count=1,
                             price_usd_per_hour=0.8048, labels=labels)
                )  # fmt: skip
    store = load_runtime(config_path).open_timeseries()
    try:
        store.ensure_schema()
        store.write_samples(Sample.to_frame(samples))
        store.write_instances(Instance.to_frame(inventory))
    finally:
        store.close()


class BackgroundOptimize:
    """The optimize flow run in a thread, as a served deployment would run it, so the
    test (the reviewer) can answer it through Prefect's API while it is paused."""

    def __init__(
        self, config_path: str, *, from_deployment: bool = False, **parameters: Any
    ) -> None:
        self.config_path = config_path
        self.parameters = {
            "config_path": config_path,
            "agents": ["cost"],
            "use_llm": False,
            **parameters,
        }
        self.from_deployment = from_deployment
        self.state: State | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="optimize", daemon=True)

    def _run(self) -> None:
        try:
            if self.from_deployment:
                self.state = self._run_deployment()
            else:
                self.state = optimize_flow(return_state=True, **self.parameters)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def _run_deployment(self) -> State:
        """A run created from a registered deployment (as the scheduler creates one) and
        executed here, as a worker or ``serve`` would execute it."""
        deployment_id = optimize_flow.to_deployment(name="optimize-test").apply()
        with get_client(sync_client=True) as client:
            flow_run = client.create_flow_run_from_deployment(
                deployment_id, parameters=self.parameters
            )
        state = run_flow(
            optimize_flow, flow_run=flow_run, parameters=self.parameters, return_type="state"
        )
        assert isinstance(state, State)
        return state

    def start(self) -> BackgroundOptimize:
        self._thread.start()
        return self

    def join(self, timeout: float = 120) -> OptimizeSummary:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the optimize run did not finish"
        if self.error is not None:
            raise self.error
        assert self.state is not None
        assert self.state.is_completed(), self.state
        summary = self.state.result()
        assert isinstance(summary, OptimizeSummary)
        return summary

    def wait_paused(self, *, pause: int = 1, timeout: float = 120) -> PausedRun:
        """Block until the run is paused for the ``pause``-th time; its id and form."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._thread.is_alive() or self.state is None, (self.state, self.error)
            run_id = _waiting_run(self.config_path)
            if run_id is not None:
                with get_client(sync_client=True) as client:
                    run = client.read_flow_run(UUID(run_id))
                    state = run.state
                    if state is not None and state.is_paused():
                        details = state.state_details
                        if details.pause_key == str(pause) and details.run_input_keyset:
                            key = details.run_input_keyset["description"]
                            form = client.read_flow_run_input(UUID(run_id), key)
                            return PausedRun(run_id, json.loads(form))
            time.sleep(0.2)
        raise AssertionError(f"the optimize run did not pause (pause {pause}) in {timeout} s")


@dataclass(frozen=True)
class PausedRun:
    run_id: str
    #: The form's description: the plans in markdown.
    description: str


def _waiting_run(config_path: str) -> str | None:
    """The flow run a pending plan waits on, from the state store."""
    state = load_runtime(config_path).open_state()
    try:
        with state.session(readonly=True) as session:
            plan = session.exec(
                select(Plan)
                .where(col(Plan.flow_run_id).is_not(None))
                .where(Plan.status == PlanStatus.PENDING_APPROVAL)
                .order_by(col(Plan.created_at).desc())
            ).first()
        return plan.flow_run_id if plan else None
    finally:
        state.close()
