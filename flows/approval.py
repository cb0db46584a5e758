"""The approval step of the optimize flow: one paused run, one form, a stored decision.

The run pauses once for its batch of plans (``pause_flow_run(wait_for_input=…)``); the
Prefect UI shows :class:`ApprovalForm` with the plans in markdown as its description.
Why one form per batch rather than one pause per plan: a pause blocks the run, so
per-plan pauses would make reviewers answer in rank order and give each plan its own
24 h, stretching one run over days. One answer may cover every plan or only those named
under ``plans`` (what ``optiinfra approve PLAN_ID`` sends); the run then pauses again
for the rest, within what is left of the same timeout.

The form is plain JSON-schema data (the server validates the input against it before
the run resumes); what the schema cannot say (``not_after`` after ``not_before``) is
checked when the answer arrives, and an answer that fails it is logged and the run asks
again. Decisions are stored by :mod:`optiinfra.approvals`, which knows nothing of
Prefect. A timeout stores ``expired`` decisions (reviewer ``timeout``: rejected) and
sets the run back to Running, since Prefect otherwise ends a timed-out pause Failed
even when the flow goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.states import Running
from pydantic import BaseModel, Field, ValidationError

from agents.coordinator import PlanDraft
from agents.report import render_approval_request
from optiinfra.approvals import (
    Answer,
    ApprovalLimits,
    record_decision,
    record_timeout,
    still_pending,
    stored_approval,
)
from optiinfra.runtime import Runtime
from optiinfra.store.state import ApprovalDecision, StateStore


class ApprovalForm(RunInput):
    """A reviewer's answer to a paused optimize run (the form in the Prefect UI)."""

    decision: Answer = Field(description="approve or reject")
    reviewer: str = Field(min_length=1, max_length=200, description="Who decides.")
    comment: str = Field(default="", max_length=4000, description="Why.")
    plans: list[str] = Field(
        default_factory=list,
        description="Plan ids (or unique prefixes) this answer covers; empty: every plan "
        "in the form.",
    )
    max_rollout_percent: int | None = Field(
        default=None, ge=1, le=100, description="Approve at most this share of the target."
    )
    not_before: datetime | None = Field(
        default=None, description="Roll out no earlier than this (UTC)."
    )
    not_after: datetime | None = Field(default=None, description="Start no later than this (UTC).")

    def limits(self) -> ApprovalLimits:
        """The limits as the store keeps them (raises ``ValidationError`` if inconsistent)."""
        return ApprovalLimits(
            max_rollout_percent=self.max_rollout_percent,
            not_before=self.not_before,
            not_after=self.not_after,
        )


class ApprovalOutcome(BaseModel):
    """What the approval step of one run ended with, plan by plan."""

    flow_run_id: str
    asked: list[str]
    approved: list[str] = Field(default_factory=list)
    rejected: list[str] = Field(default_factory=list, description="Rejected by a person.")
    expired: list[str] = Field(
        default_factory=list, description="No answer before the timeout: rejected."
    )
    pending: list[str] = Field(
        default_factory=list, description="Left pending (a later run waits on them)."
    )
    answers: int = Field(default=0, description="Answers the run received.")
    timed_out: bool = False


def should_wait(runtime: Runtime, wait_for_approval: bool | None) -> bool:
    """The flow parameter if given, else ``optimize.approval`` (``auto``: only runs of a
    deployment, where the server that holds the pause outlives the caller)."""
    if wait_for_approval is not None:
        return wait_for_approval
    mode = runtime.config.optimize.approval
    if mode != "auto":
        return mode == "wait"
    try:
        flow_run = get_run_context().flow_run  # type: ignore[union-attr]
    except Exception:
        return False
    return flow_run is not None and flow_run.deployment_id is not None


def await_approval(
    runtime: Runtime,
    plans: Sequence[PlanDraft],
    plan_ids: Mapping[int, str],
    *,
    flow_run_id: str,
    timeout_seconds: float,
    poll_seconds: int = 10,
    similar_outcomes: Mapping[str, Sequence[str]] | None = None,
) -> ApprovalOutcome:
    """Pause until every plan of the batch is answered or the timeout has passed."""
    logger = get_run_logger()
    drafts = {plan_ids[p.rank]: p for p in plans if p.rank in plan_ids}
    asked = list(drafts)
    outcome = ApprovalOutcome(flow_run_id=flow_run_id, asked=asked)
    deadline = time.monotonic() + timeout_seconds
    until = datetime.now(UTC) + timedelta(seconds=timeout_seconds)
    timeout_text = f"{_duration_text(timeout_seconds)} (by {until:%Y-%m-%d %H:%M:%S} UTC)"
    while True:
        with _state(runtime) as state:
            remaining = still_pending(state, asked)
        left = deadline - time.monotonic()
        if not remaining:
            break
        if left < 1:
            outcome.timed_out = True
            break
        description = render_approval_request(
            [drafts[p] for p in remaining],
            {drafts[p].rank: p for p in remaining},
            run_id=flow_run_id,
            timeout_text=timeout_text,
            similar_outcomes=similar_outcomes,
        )
        form = ApprovalForm.with_initial_data(description=description)
        try:
            answer: ApprovalForm = pause_flow_run(
                wait_for_input=form,
                timeout=max(1, math.ceil(left)),
                poll_interval=max(1, poll_seconds),
            )
        except FlowPauseTimeout:
            _back_to_running(flow_run_id)
            outcome.timed_out = True
            break
        outcome.answers += 1
        _apply(runtime, answer, remaining, asked, flow_run_id)
    with _state(runtime) as state:
        if outcome.timed_out:
            for plan_id in still_pending(state, asked):
                result = record_timeout(
                    state, plan_id, timeout_seconds=timeout_seconds, flow_run_id=flow_run_id
                )
                logger.info(result.message)
        _classify(state, outcome)
    _publish(outcome)
    return outcome


def _apply(
    runtime: Runtime,
    answer: ApprovalForm,
    remaining: list[str],
    asked: list[str],
    flow_run_id: str,
) -> None:
    """Store one answer for the plans it covers; log what it could not cover."""
    logger = get_run_logger()
    try:
        limits = answer.limits()
    except ValidationError as exc:
        problem = "; ".join(e["msg"] for e in exc.errors())
        logger.error("answer from %s refused (%s); asking again", answer.reviewer, problem)
        return
    covered: list[str] = []
    for wanted in answer.plans or remaining:
        matches = [p for p in asked if p == wanted or p.startswith(wanted)]
        if len(matches) != 1:
            logger.warning("answer names plan %r, which this run did not ask about", wanted)
            continue
        covered.append(matches[0])
    with _state(runtime) as state:
        for plan_id in covered:
            result = record_decision(
                state,
                plan_id,
                answer.decision,
                answer.reviewer,
                answer.comment,
                limits,
                flow_run_id=flow_run_id,
            )
            logger.info(result.message)


def _classify(state: StateStore, outcome: ApprovalOutcome) -> None:
    for plan_id in outcome.asked:
        approval = stored_approval(state, plan_id)
        if approval is None:
            outcome.pending.append(plan_id)
        elif approval.decision == ApprovalDecision.APPROVED:
            outcome.approved.append(plan_id)
        elif approval.decision == ApprovalDecision.EXPIRED:
            outcome.expired.append(plan_id)
        else:
            outcome.rejected.append(plan_id)


def _publish(outcome: ApprovalOutcome) -> None:
    """A markdown artifact in the run: which plans were approved, rejected, expired."""
    lines = ["# Approval", ""]
    for label, ids in (
        ("approved", outcome.approved),
        ("rejected", outcome.rejected),
        ("expired (no answer: rejected)", outcome.expired),
        ("still pending (a later run asks)", outcome.pending),
    ):
        lines.append(f"- {label}: " + (", ".join(f"`{p}`" for p in ids) or "none"))
    create_markdown_artifact(
        key="optimize-approval",
        markdown="\n".join(lines),
        description=f"{len(outcome.approved)} of {len(outcome.asked)} plan(s) approved",
    )


def _back_to_running(flow_run_id: str) -> None:
    """After a pause timed out, the run goes on (to store the expiry and complete)."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Running(), force=True)


def _duration_text(seconds: float) -> str:
    """``86400`` → ``24h``, ``90`` → ``90s``: the timeout as the form states it."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@contextmanager
def _state(runtime: Runtime) -> Iterator[StateStore]:
    """A short-lived state store: a paused run may wait a day, holding nothing."""
    state = runtime.open_state()
    try:
        yield state
    finally:
        state.close()
