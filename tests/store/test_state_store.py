"""The state store on SQLite and PostgreSQL: payloads, timestamps, config sync, audit, runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import select

from optiinfra.config.schema import OptiInfraConfig, ProviderConfig, Tenant
from optiinfra.errors import StoreError
from optiinfra.store.state import (
    Approval,
    ApprovalDecision,
    AuditEvent,
    CollectionRun,
    CollectionStatus,
    Plan,
    PlanRecommendation,
    PlanStatus,
    Provider,
    Recommendation,
    RolloutStep,
    StateStore,
    open_state,
)
from optiinfra.store.state import Tenant as TenantRow
from tests.store.state_fixtures import run_at_once, state_url

__all__ = ["state_url"]


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    opened = open_state(state_url)
    yield opened
    opened.close()


def _add_tenant(store: StateStore, name: str = "default") -> None:
    with store.session() as session:
        session.add(TenantRow(id=name))


def test_json_payloads_round_trip(store: StateStore) -> None:
    _add_tenant(store)
    change = {"engine_args": {"max_num_seqs": 256, "enable_prefix_caching": True}}
    deltas = {
        "cost_usd_per_hour": {"value": -1.25, "unit": "USD/h"},
        "ttft_p95_seconds": {"value": 0.012, "unit": "s"},
    }
    evidence = {"window": ["2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"], "note": "ünïcode ✓"}
    with store.session() as session:
        rec = Recommendation(
            tenant="default",
            agent="performance",
            kind="engine_tuning",
            target="llama-70b",
            change=change,
            expected_deltas=deltas,
            confidence=0.8,
            evidence=evidence,
        )
        plan = Plan(tenant="default", assessments=[{"agent": "cost", "verdict": "ok"}])
        session.add_all([rec, plan])
        session.flush()
        session.add(PlanRecommendation(plan_id=plan.id, recommendation_id=rec.id))
        session.add(
            Approval(
                plan_id=plan.id,
                tenant="default",
                decision=ApprovalDecision.APPROVED,
                reviewer="ana",
                limits={"max_percent": 50, "regions": ["eu-west-1"]},
            )
        )
    with store.session(readonly=True) as session:
        loaded = session.get(Recommendation, rec.id)
        approval = session.exec(select(Approval)).one()
        link = session.exec(select(PlanRecommendation)).one()
        loaded_plan = session.get(Plan, plan.id)
    assert loaded is not None and loaded_plan is not None
    assert loaded.change == change
    assert loaded.expected_deltas == deltas
    assert loaded.evidence == evidence
    assert loaded.status == "proposed"
    assert loaded_plan.assessments == [{"agent": "cost", "verdict": "ok"}]
    assert loaded_plan.status is PlanStatus.DRAFT
    assert approval.limits == {"max_percent": 50, "regions": ["eu-west-1"]}
    assert approval.decision is ApprovalDecision.APPROVED
    assert (link.plan_id, link.recommendation_id) == (plan.id, rec.id)


def test_timestamps_come_back_timezone_aware_utc(store: StateStore) -> None:
    _add_tenant(store)
    plus_five = timezone(timedelta(hours=5, minutes=30))
    started = datetime(2026, 11, 24, 7, 15, 30, 123456, tzinfo=plus_five)
    with store.session() as session:
        plan = Plan(tenant="default")
        session.add(plan)
        session.flush()
        from optiinfra.store.state import Rollout

        rollout = Rollout(plan_id=plan.id, tenant="default", started_at=started)
        session.add(rollout)
    with store.session(readonly=True) as session:
        loaded = session.get(Rollout, rollout.id)
    assert loaded is not None and loaded.started_at is not None
    assert loaded.started_at == started
    assert loaded.started_at.tzinfo is UTC
    assert loaded.started_at.hour == 1 and loaded.started_at.minute == 45
    assert loaded.created_at.tzinfo is UTC
    assert loaded.finished_at is None


def test_naive_timestamps_and_unknown_statuses_are_refused(store: StateStore) -> None:
    _add_tenant(store)
    with pytest.raises(StatementError, match="naive datetime"), store.session() as session:
        session.add(AuditEvent(at=datetime(2026, 1, 1), actor="a", action="b", subject="c"))
    with pytest.raises(StatementError, match="allowed: draft"), store.session() as session:
        session.add(Plan(tenant="default", status="maybe"))
    assert store.row_counts()["plans"] == 0
    assert store.row_counts()["audit_events"] == 0


def test_foreign_keys_and_unique_steps_are_enforced(store: StateStore) -> None:
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(Plan(tenant="nobody"))
    _add_tenant(store)
    from optiinfra.store.state import Rollout

    with store.session() as session:
        plan = Plan(tenant="default")
        session.add(plan)
        session.flush()
        rollout = Rollout(plan_id=plan.id, tenant="default", steps_percent=[10, 50, 100])
        session.add(rollout)
        session.flush()
        session.add(RolloutStep(rollout_id=rollout.id, position=0, percent=10))
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(RolloutStep(rollout_id=rollout.id, position=0, percent=50))
    assert store.row_counts()["rollout_steps"] == 1


def test_a_session_that_raises_writes_nothing(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.session() as session:
        session.add(TenantRow(id="acme"))
        session.flush()
        raise RuntimeError("boom")
    assert store.row_counts()["tenants"] == 0


def _config(*providers: ProviderConfig, tenants: tuple[str, ...] = ("default",)) -> OptiInfraConfig:
    return OptiInfraConfig(
        tenants=[Tenant(name=name, display_name=name.title()) for name in tenants],
        providers=list(providers),
    )


def test_sync_config_is_idempotent_and_never_deletes(store: StateStore) -> None:
    local = ProviderConfig(name="local", kind="local")
    prom = ProviderConfig(
        name="prom-eu",
        kind="prometheus",
        tenant="acme",
        region="eu-west-1",
        prometheus_url="http://prom.example:9090",
        credentials={"token": "PROM_TOKEN"},
    )
    store.sync_config(_config(local, prom, tenants=("default", "acme")))
    with store.session(readonly=True) as session:
        first = {p.id: p for p in session.exec(select(Provider))}
    audits_after_first = store.row_counts()["audit_events"]
    assert set(first) == {"local", "prom-eu"}
    assert first["prom-eu"].tenant == "acme"
    assert first["prom-eu"].config["prometheus_url"] == "http://prom.example:9090/"
    assert first["prom-eu"].config["credentials"] == {"token": "PROM_TOKEN"}
    assert audits_after_first == 1

    store.sync_config(_config(local, prom, tenants=("default", "acme")))
    with store.session(readonly=True) as session:
        second = {p.id: p for p in session.exec(select(Provider))}
    assert {k: v.updated_at for k, v in second.items()} == {
        k: v.updated_at for k, v in first.items()
    }
    assert store.row_counts()["audit_events"] == audits_after_first

    store.sync_config(_config(local))  # prom-eu and tenant acme are gone from the file
    with store.session(readonly=True) as session:
        gone = session.get(Provider, "prom-eu")
        kept = session.get(Provider, "local")
        tenants = {t.id for t in session.exec(select(TenantRow))}
    assert gone is not None and not gone.enabled and gone.removed_at is not None
    assert kept is not None and kept.enabled and kept.removed_at is None
    assert tenants == {"default", "acme"}
    assert store.row_counts()["providers"] == 2

    store.sync_config(_config(local, prom, tenants=("default", "acme")))  # it comes back
    with store.session(readonly=True) as session:
        back = session.get(Provider, "prom-eu")
    assert back is not None and back.enabled and back.removed_at is None


def test_audit_events_are_recorded_without_secrets(store: StateStore) -> None:
    store.record_audit(
        actor="ana",
        action="plan.approve",
        subject="plan/123",
        detail={"comment": "ok", "auth": {"api_key": "sk-live-123", "Password": "hunter2"}},
        tenant="acme",
    )
    with store.session(readonly=True) as session:
        event = session.exec(select(AuditEvent)).one()
    assert (event.actor, event.action, event.subject, event.tenant) == (
        "ana",
        "plan.approve",
        "plan/123",
        "acme",
    )
    assert event.detail == {"comment": "ok", "auth": {"api_key": "***", "Password": "***"}}
    assert event.at.tzinfo is UTC


def test_collection_runs_are_listed_newest_first(store: StateStore) -> None:
    base = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    for minutes, provider, status in [(0, "a", "ok"), (30, "b", "failed"), (15, "a", "partial")]:
        store.record_collection_run(
            CollectionRun(
                run_id=f"run-{minutes}",
                provider=provider,
                started_at=base + timedelta(minutes=minutes),
                finished_at=base + timedelta(minutes=minutes, seconds=12),
                status=status,
                samples=10 * minutes,
                error="timeout after 60s" if status == "failed" else None,
            )
        )
    runs = store.last_collection_runs()
    assert [r.run_id for r in runs] == ["run-30", "run-15", "run-0"]
    assert runs[0].status is CollectionStatus.FAILED and runs[0].error == "timeout after 60s"
    assert runs[0].duration_seconds == 12.0
    assert runs[0].started_at.tzinfo is UTC
    assert [r.run_id for r in store.last_collection_runs(limit=2)] == ["run-30", "run-15"]

    # Recording the same (run, provider) again replaces it rather than duplicating it.
    store.record_collection_run(
        CollectionRun(
            run_id="run-30",
            provider="b",
            started_at=base + timedelta(minutes=30),
            finished_at=base + timedelta(minutes=31),
            status="ok",
            samples=99,
        )
    )
    assert store.row_counts()["collection_runs"] == 3
    newest = store.last_collection_runs(limit=1)[0]
    assert (newest.status, newest.samples, newest.error) == ("ok", 99, None)


def test_collection_runs_are_checked(store: StateStore) -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match="finished_at is before started_at"):
        store.record_collection_run(
            CollectionRun(run_id="r", provider="p", started_at=now, finished_at=now - timedelta(1))
        )
    with pytest.raises(ValueError, match="not a valid"):
        store.record_collection_run(
            CollectionRun(run_id="r", provider="p", started_at=now, finished_at=now, status="meh")
        )
    assert store.row_counts()["collection_runs"] == 0


def test_row_counts_cover_every_table(store: StateStore) -> None:
    store.sync_config(_config(ProviderConfig(name="local", kind="local")))
    counts = store.row_counts()
    assert counts["tenants"] == 1 and counts["providers"] == 1 and counts["audit_events"] == 1
    assert set(counts) >= {"recommendations", "plans", "approvals", "rollouts", "outcomes"}
    assert store.count("providers") == 1


# ------------------------------------------------------------------ bad URLs


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql+psycopg://opti:hunter2@127.0.0.1:1/state", "127.0.0.1:1"),
        ("postgresql://opti:hunter2@127.0.0.1:1/state", "127.0.0.1:1"),
        ("mysql://opti:hunter2@db.example/state", "unsupported scheme"),
        ("postgresql+asyncpg://opti:hunter2@db.example/state", "not supported"),
        ("not a url", "invalid state store URL"),
        ("sqlite://", "give a database file"),
    ],
)
def test_a_bad_url_gives_a_store_error_without_the_password(url: str, expected: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_state(url)
    assert expected in caught.value.message
    assert "hunter2" not in caught.value.message
    assert "\n" not in caught.value.message


def test_an_unwritable_sqlite_path_gives_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="a-file"):
        open_state(f"sqlite:///{blocker / 'state.db'}")
    assert blocker.read_text() == "not a directory"


def test_a_corrupt_sqlite_file_gives_a_store_error_and_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"state\.db"):
        open_state(f"sqlite:///{path}")
    assert path.read_bytes() == b"this is not a database" * 100


_WRITE_MANY = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from optiinfra.config.schema import OptiInfraConfig, ProviderConfig
from optiinfra.store.state import CollectionRun, open_state
url, name, gate = sys.argv[1], sys.argv[2], Path(sys.argv[3])
store = open_state(url)
print("ready", flush=True)
while not gate.exists():
    time.sleep(0.005)
config = OptiInfraConfig(providers=[ProviderConfig(name="local", kind="local")])
for i in range(25):
    store.sync_config(config)
    store.record_audit(actor=name, action="test.write", subject=str(i))
    now = datetime.now(UTC)
    store.record_collection_run(
        CollectionRun(run_id=f"{name}-{i}", provider="local", started_at=now, finished_at=now)
    )
    store.row_counts()
store.close()
print("done", flush=True)
"""


def test_two_processes_writing_at_once_lose_nothing(state_url: str, tmp_path: Path) -> None:
    open_state(state_url).close()
    outputs = run_at_once(_WRITE_MANY, [[state_url, "w1"], [state_url, "w2"]], tmp_path / "gate")
    assert outputs == ["done", "done"]
    store = open_state(state_url)
    try:
        counts = store.row_counts()
        # 50 test events + exactly one config.sync event (later syncs change nothing).
        assert counts["audit_events"] == 51
        assert counts["collection_runs"] == 50
        assert counts["providers"] == 1 and counts["tenants"] == 1
    finally:
        store.close()
