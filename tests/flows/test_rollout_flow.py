"""The rollout flow's refusals, which must change nothing: outside the approval's window,
and at a provider with no actuator; and how a provider's actuator is found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from flows.rollout import rollout_flow
from optiinfra.approvals import record_decision
from optiinfra.config import OptiInfraConfig
from optiinfra.errors import ConfigError
from optiinfra.runtime import load_runtime
from optiinfra.store.state import (
    Plan,
    PlanRecommendation,
    PlanStatus,
    Recommendation,
    RecommendationStatus,
    Rollout,
    Tenant,
)
from tasks.rollout import actuator_config

pytestmark = pytest.mark.prefect


def _config(tmp_path: Path) -> str:
    path = tmp_path / "providers.yaml"
    path.write_text(
        "version: 1\nproviders:\n"
        "  - {name: lab, kind: sandbox, options: {control_url: 'http://127.0.0.1:9'}}\n"
        "  - {name: prom, kind: prometheus, prometheus_url: 'http://127.0.0.1:9'}\n"
    )
    return str(path)


def _approved_plan(config: str, provider: str, **limits: object) -> str:
    state = load_runtime(config).open_state()
    try:
        with state.session() as session:
            session.add(Tenant(id="default"))
            session.flush()
            rec = Recommendation(
                tenant="default", provider=provider, agent="performance", kind="engine_tuning",
                target="chat", change={"engine_args": {"max_num_seqs": 32}},
                status=RecommendationStatus.PLANNED,
            )  # fmt: skip
            plan = Plan(tenant="default", status=PlanStatus.PENDING_APPROVAL)
            session.add(rec)
            session.add(plan)
            session.flush()
            session.add(PlanRecommendation(plan_id=plan.id, recommendation_id=rec.id))
            plan_id = plan.id
        record_decision(state, plan_id, "approve", "alice", limits=limits)
        return plan_id
    finally:
        state.close()


def _rollouts(config: str) -> list[Rollout]:
    state = load_runtime(config).open_state()
    try:
        with state.session(readonly=True) as session:
            return list(session.exec(select(Rollout)).all())
    finally:
        state.close()


def test_before_the_approval_window_nothing_starts(prefect_harness: None, tmp_path: Path) -> None:
    config = _config(tmp_path)
    later = datetime.now(UTC) + timedelta(hours=2)
    plan_id = _approved_plan(config, "lab", not_before=later)
    final = rollout_flow(plan_id=plan_id, config_path=config, return_state=True)
    assert final.is_completed() and final.name == "NotStarted"
    assert "no earlier than" in final.message
    assert _rollouts(config) == []


def test_a_provider_without_an_actuator_is_refused_before_anything_is_stored(
    prefect_harness: None, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    plan_id = _approved_plan(config, "prom")
    final = rollout_flow(plan_id=plan_id, config_path=config, return_state=True)
    assert final.is_failed()
    assert "providers.prom.actuator" in final.message
    assert _rollouts(config) == []


def test_the_actuator_of_a_provider() -> None:
    config = OptiInfraConfig(
        providers=[
            {"name": "lab", "kind": "sandbox", "options": {"control_url": "http://h:1"}},
            {
                "name": "k8s",
                "kind": "prometheus",
                "actuator": {
                    "kind": "kubernetes",
                    "options": {"namespace": "inference"},
                    "credentials": {"token": "K8S_TOKEN"},
                },
            },
            {"name": "prom", "kind": "prometheus"},
        ]
    )
    sandbox = actuator_config(config.provider("lab"))
    assert (sandbox.kind, sandbox.options) == ("sandbox", {"control_url": "http://h:1"})
    k8s = actuator_config(config.provider("k8s"))
    assert (k8s.kind, k8s.credentials) == ("kubernetes", {"token": "K8S_TOKEN"})
    with pytest.raises(ConfigError, match=r"providers\.prom\.actuator"):
        actuator_config(config.provider("prom"))


def test_an_actuator_credential_must_be_a_variable_name() -> None:
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        OptiInfraConfig(
            providers=[
                {
                    "name": "w",
                    "kind": "prometheus",
                    "actuator": {"kind": "webhook", "credentials": {"token": "sk-live 123"}},
                }
            ]
        )


def test_the_rollout_deployments_have_no_schedule() -> None:
    from deployments.rollout import rollout_deployments

    rollout, rollback = rollout_deployments(OptiInfraConfig(), config_path="/p.yaml")
    assert (rollout.name, rollback.name) == ("rollout", "rollback")
    assert rollout.parameters == {"config_path": "/p.yaml"}
    assert not rollout.schedules and not rollback.schedules
