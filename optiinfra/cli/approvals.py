"""``optiinfra plans``, ``optiinfra approve PLAN_ID``, ``optiinfra reject PLAN_ID``.

For people at a terminal: the same answer the Prefect UI's form gives, sent through
Prefect's API (``resume_flow_run`` with the run input) to the optimize run that is
paused on the plan. The run stores the decision; this command never writes one itself,
so every decision goes through the one place that checks it. When the run is no longer
paused (answered already, timed out, gone) the command says so and changes nothing.

The paused run lives on a Prefect server: set ``PREFECT_API_URL`` to the one the
optimize deployment uses (an ad-hoc run on Prefect's ephemeral server cannot be reached
from another process).
"""

from __future__ import annotations

import argparse
import getpass
import os
import time
from typing import Any
from uuid import UUID

from optiinfra.cli.render import table
from optiinfra.errors import OptiInfraError

#: How often the command looks again while a run re-pauses or stores the decision.
_POLL_SECONDS = 0.5


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "plans", help="list plans waiting for approval and the paused optimize run that asks"
    )
    p.add_argument(
        "--no-runs", action="store_true", help="do not ask the Prefect server about the runs"
    )
    p.set_defaults(handler=cmd_plans)
    for verb, decision in (("approve", "approve"), ("reject", "reject")):
        p = sub.add_parser(verb, help=f"{verb} a pending plan (answers its paused optimize run)")
        p.add_argument("plan_id", metavar="PLAN_ID", help="plan id, or a unique prefix of it")
        p.add_argument("--reviewer", help="who decides (default: the login name)")
        p.add_argument("--comment", default="", help="why")
        if verb == "approve":
            p.add_argument(
                "--max-percent",
                type=int,
                metavar="N",
                help="roll out to at most N percent of the target (1-100)",
            )
            p.add_argument("--not-before", metavar="TIME", help="roll out no earlier (ISO, UTC)")
            p.add_argument("--not-after", metavar="TIME", help="start no later (ISO, UTC)")
        p.add_argument(
            "--wait",
            type=float,
            default=30.0,
            metavar="SECONDS",
            help="how long to wait for the run to store the decision (default 30; 0: do not)",
        )
        p.set_defaults(handler=cmd_answer, decision=decision)


# ---------------------------------------------------------------- optiinfra plans


def cmd_plans(args: argparse.Namespace) -> int:
    from optiinfra.approvals import pending_plans
    from optiinfra.runtime import load_runtime

    runtime = load_runtime(args.config)
    state = runtime.open_state()
    try:
        plans = pending_plans(state)
    finally:
        state.close()
    if not plans:
        print("no plans waiting for approval")
        return 0
    runs = {} if args.no_runs else _run_states({p.flow_run_id for p in plans if p.flow_run_id})
    print(f"{len(plans)} plan(s) waiting for approval")
    print(
        table(
            ["plan id", "#", "tenant", "plan", "saving/month", "created", "run", "run state"],
            [
                (
                    p.id,
                    p.rank,
                    p.tenant,
                    p.summary,
                    _saving(p.expected_deltas),
                    p.created_at.strftime("%Y-%m-%d %H:%M"),
                    p.flow_run_id or "—",
                    runs.get(p.flow_run_id, "") if p.flow_run_id else "no run waits",
                )
                for p in plans
            ],
        )
    )
    print()
    print("answer with: optiinfra approve PLAN_ID | optiinfra reject PLAN_ID")
    if any(not p.flow_run_id for p in plans):
        print("(a plan no run waits for is asked about again by the next optimize run that waits)")
    return 0


def _saving(deltas: dict[str, Any]) -> str:
    value = (deltas.get("cost_usd_per_month") or {}).get("value")
    return f"${-value:,.0f}" if isinstance(value, int | float) else ""


def _run_states(run_ids: set[str]) -> dict[str, str]:
    """Each run's state name from the Prefect API (``paused`` is the one that listens)."""
    if not run_ids:
        return {}
    url = _api_url()
    if url is None:
        return dict.fromkeys(run_ids, "unknown (PREFECT_API_URL not set)")
    from prefect.client.orchestration import get_client

    out: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for run_id in run_ids:
            try:
                run = client.read_flow_run(UUID(run_id))
            except Exception as exc:  # one unreadable run must not hide the others
                out[run_id] = f"unknown ({_first_line(exc)})"
                continue
            out[run_id] = (run.state.name if run.state else "unknown").lower()
    return out


# ---------------------------------------------------------------- approve / reject


def cmd_answer(args: argparse.Namespace) -> int:
    from optiinfra.approvals import describe, find_plan, parse_decision
    from optiinfra.runtime import load_runtime
    from optiinfra.store.state import PlanStatus

    form = _form(args)
    wanted = parse_decision(args.decision)
    runtime = load_runtime(args.config)
    state = runtime.open_state()
    try:
        plan = find_plan(state, args.plan_id)
        if plan.status != PlanStatus.PENDING_APPROVAL:
            return _not_pending(state, plan.id, plan.status.value, wanted)
        if not plan.flow_run_id:
            print(
                f"plan {plan.id}: no optimize run is waiting for an answer on it (it was "
                "stored by a run that did not pause: see optimize.approval); the next run "
                "that waits asks again. Nothing changed."
            )
            return 1
        form["plans"] = [plan.id]
        delivered = _deliver(state, plan.id, plan.flow_run_id, form, args.wait)
        if delivered is not None:
            return delivered
        print(f"plan {plan.id}: answer sent to paused run {plan.flow_run_id}")
        if args.wait <= 0:
            print("the run stores the decision when it next looks (its poll interval)")
            return 0
        approval = _wait_for_decision(state, plan.id, args.wait)
        if approval is None:
            print(
                f"the run has not stored it within {args.wait:g} s; it will when it next "
                "looks. Check with: optiinfra plans"
            )
            return 0
        print(f"plan {plan.id}: {describe(approval)}")
        return 0 if approval.decision == wanted else 1
    finally:
        state.close()


def _form(args: argparse.Namespace) -> dict[str, Any]:
    """The run input, checked here with the form's own model before anything is sent."""
    from pydantic import ValidationError

    from flows.approval import ApprovalForm

    reviewer = (args.reviewer or _login()).strip()
    if not reviewer:
        raise OptiInfraError("--reviewer: give who decides (no login name to default to)")
    values: dict[str, Any] = {
        "decision": args.decision,
        "reviewer": reviewer,
        "comment": args.comment,
        "max_rollout_percent": getattr(args, "max_percent", None),
        "not_before": getattr(args, "not_before", None),
        "not_after": getattr(args, "not_after", None),
    }
    options = {
        "reviewer": "--reviewer",
        "comment": "--comment",
        "max_rollout_percent": "--max-percent",
        "not_before": "--not-before",
        "not_after": "--not-after",
    }
    try:
        form = ApprovalForm(**{k: v for k, v in values.items() if v is not None})
        form.limits()
    except ValidationError as exc:
        problems = "; ".join(
            f"{options.get(str(e['loc'][0]), str(e['loc'][0])) if e['loc'] else 'limits'}: "
            f"{e['msg']}"
            for e in exc.errors()
        )
        raise OptiInfraError(problems) from None
    return form.model_dump(mode="json", exclude_none=True)


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return os.environ.get("USER", "")


def _not_pending(state: Any, plan_id: str, status: str, wanted: Any) -> int:
    from optiinfra.approvals import describe, stored_approval

    approval = stored_approval(state, plan_id)
    if approval is None:
        print(f"plan {plan_id} is {status}, not waiting for approval. Nothing changed.")
        return 1
    print(f"plan {plan_id} was already answered: {describe(approval)}. Nothing changed.")
    return 0 if approval.decision == wanted else 1


def _deliver(
    state: Any, plan_id: str, run_id: str, form: dict[str, Any], wait: float
) -> int | None:
    """Resume the paused run with the answer. None when delivered, else the exit code.

    Between two answers the run is briefly Running (storing the last answer, pausing
    again for the rest); the command waits for it to pause again, up to ``wait``
    seconds (at least a few), as long as the plan is still pending.
    """
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    from optiinfra.approvals import find_plan, parse_decision, still_pending

    url = _api_url()
    if url is None:
        raise OptiInfraError(
            "PREFECT_API_URL is not set: point it at the Prefect server the optimize run "
            "uses (e.g. http://127.0.0.1:4200/api)"
        )
    deadline = time.monotonic() + max(wait, 5.0)
    while True:
        try:
            resume_flow_run(UUID(run_id), run_input=form)
            return None
        except NotPausedError:
            pass
        except FlowPauseTimeout:
            print(
                f"run {run_id} is no longer paused: its approval window closed (timed out); "
                "it stores the plan as rejected by timeout. Nothing changed."
            )
            return 1
        except ObjectNotFound:
            raise OptiInfraError(
                f"flow run {run_id} (plan {plan_id}) not found on the Prefect server at {url}"
            ) from None
        except RuntimeError as exc:
            raise OptiInfraError(f"the Prefect server refused the answer: {exc}") from None
        except (OSError, httpx.HTTPError) as exc:
            raise OptiInfraError(f"cannot reach the Prefect server at {url}: {exc}") from None
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(run_id))
        name = run.state.name if run.state else "unknown"
        busy = run.state is not None and (run.state.is_running() or run.state.is_paused())
        if busy and still_pending(state, [plan_id]) and time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
            continue
        if not still_pending(state, [plan_id]):
            plan = find_plan(state, plan_id)
            return _not_pending(state, plan_id, plan.status.value, parse_decision(form["decision"]))
        print(
            f"run {run_id} is no longer paused (state: {name.lower()}); it does not listen "
            f"for answers any more. Plan {plan_id} stays pending. Nothing changed."
        )
        return 1


def _wait_for_decision(state: Any, plan_id: str, wait: float) -> Any:
    from optiinfra.approvals import stored_approval

    deadline = time.monotonic() + wait
    while True:
        approval = stored_approval(state, plan_id)
        if approval is not None or time.monotonic() >= deadline:
            return approval
        time.sleep(_POLL_SECONDS)


def _api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    value = PREFECT_API_URL.value()
    return str(value) if value else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
