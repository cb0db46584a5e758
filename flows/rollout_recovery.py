"""Recovery: rollouts that a dead process left half-way are resumed or rolled back by the
next rollout run, from their stored baseline (docs/rollout.md, "Recovery").

A rollout is an orphan when its Prefect flow run has ended, its process is gone (same
host), or its row has had no heartbeat for ``stale_after_seconds``. The orphan of the plan
the new run was asked for is resumed; any other is rolled back, since nobody would
otherwise watch its canary.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from prefect import get_run_logger
from prefect.client.orchestration import get_client

from flows.rollback import open_state, rollback_flow
from flows.rollout_logic import OrphanAction, orphan_action
from flows.rollout_store import audit, owner_alive, owner_id, running_rollouts, update_rollout
from optiinfra.runtime import Runtime
from optiinfra.store.state import Rollout, RolloutState
from optiinfra.store.state.types import utcnow


def _flow_run_final(flow_run_id: str | None) -> bool | None:
    """Whether the flow run has ended (None: unknown to this Prefect server)."""
    if not flow_run_id:
        return None
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(uuid.UUID(flow_run_id))
    except Exception:
        return None
    return bool(run.state and run.state.is_final())


def is_orphan(row: Rollout, *, stale_after_seconds: float, now: datetime) -> str | None:
    """Why ``row`` has nobody driving it any more, or None when its run is alive: its
    flow run has ended, its process is gone (same host), or it has not written a
    heartbeat for ``stale_after_seconds``."""
    if _flow_run_final(row.flow_run_id):
        return f"its flow run {row.flow_run_id} has ended"
    if row.owner and owner_alive(row.owner) is False:
        return f"its process {row.owner} is gone"
    quiet = (now - row.updated_at).total_seconds()
    if quiet > stale_after_seconds:
        return f"no heartbeat for {quiet:.0f} s"
    return None


def recover_rollouts(
    runtime: Runtime,
    plan_id: str,
    *,
    config_path: str | None,
    on_orphan: OrphanAction,
    stale_after_seconds: float,
    flow_run_id: str,
) -> tuple[str | None, list[str]]:
    """Resume or roll back rollouts whose process died; (the rollout of ``plan_id`` to
    resume in this run or None, what was done)."""
    logger = get_run_logger()
    with open_state(runtime) as state:
        rows = running_rollouts(state)
    resume: str | None = None
    notes: list[str] = []
    for row in rows:
        if row.flow_run_id == flow_run_id:
            continue
        why = is_orphan(row, stale_after_seconds=stale_after_seconds, now=utcnow())
        if why is None:
            logger.info(
                "rollout %s (plan %s) is running elsewhere; left alone", row.id, row.plan_id
            )
            continue
        action = orphan_action(row.plan_id, plan_id, on_orphan)
        if row.state == RolloutState.ROLLING_BACK:
            action = "rollback"  # finish what was started
        if action == "resume" and resume is None:
            with open_state(runtime) as state:
                update_rollout(state, row.id, flow_run_id=flow_run_id, owner=owner_id())
                audit(state, row.tenant, "rollout.resumed", row.plan_id, rollout_id=row.id,
                      why=why, flow_run_id=flow_run_id)  # fmt: skip
            resume = row.id
            notes.append(f"resumed rollout {row.id} of plan {row.plan_id}: {why}")
        else:
            reason = f"recovered by run {flow_run_id}: {why} at step {row.current_step + 1}"
            rollback_flow(
                rollout_id=row.id, reason=reason, config_path=config_path,
                verdict="inconclusive", return_state=True,
            )  # fmt: skip
            notes.append(f"rolled back rollout {row.id} of plan {row.plan_id}: {why}")
        logger.warning(notes[-1])
    return resume, notes
