-- 0001 initial schema, PostgreSQL flavour (the SQLite flavour is 0001_initial.sqlite.sql).
-- Payloads are JSONB here; timestamps are TIMESTAMPTZ and always written in UTC.
-- Keep this file and the SQLite one describing the same tables and columns:
-- tests/store/test_state_migrations.py compares both with optiinfra/store/state/tables.py.
-- Status columns are TEXT; their allowed values are checked in Python.

CREATE TABLE tenants (
    id TEXT NOT NULL PRIMARY KEY,
    display_name TEXT NOT NULL DEFAULT '',
    budget_usd_per_month DOUBLE PRECISION,
    labels JSONB NOT NULL DEFAULT '{}',
    removed_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE providers (
    id TEXT NOT NULL PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (id),
    kind TEXT NOT NULL,
    region TEXT NOT NULL DEFAULT '',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    config JSONB NOT NULL DEFAULT '{}',
    removed_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX ix_providers_tenant ON providers (tenant);

CREATE TABLE recommendations (
    id TEXT NOT NULL PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (id),
    provider TEXT,
    agent TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    change JSONB NOT NULL DEFAULT '{}',
    expected_deltas JSONB NOT NULL DEFAULT '{}',
    confidence DOUBLE PRECISION NOT NULL DEFAULT 0,
    risk TEXT NOT NULL,
    evidence JSONB NOT NULL DEFAULT '{}',
    narrative TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX ix_recommendations_tenant ON recommendations (tenant);

CREATE TABLE plans (
    id TEXT NOT NULL PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (id),
    rank INTEGER NOT NULL DEFAULT 0,
    assessments JSONB NOT NULL DEFAULT '[]',
    expected_deltas JSONB NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    flow_run_id TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX ix_plans_tenant ON plans (tenant);

CREATE TABLE plan_recommendations (
    plan_id TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    recommendation_id TEXT NOT NULL REFERENCES recommendations (id),
    position INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (plan_id, recommendation_id)
);
CREATE INDEX ix_plan_recommendations_recommendation_id
    ON plan_recommendations (recommendation_id);

CREATE TABLE approvals (
    id TEXT NOT NULL PRIMARY KEY,
    plan_id TEXT NOT NULL REFERENCES plans (id),
    tenant TEXT NOT NULL REFERENCES tenants (id),
    decision TEXT NOT NULL,
    reviewer TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    limits JSONB NOT NULL DEFAULT '{}',
    decided_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX ix_approvals_plan_id ON approvals (plan_id);

CREATE TABLE rollouts (
    id TEXT NOT NULL PRIMARY KEY,
    plan_id TEXT NOT NULL REFERENCES plans (id),
    tenant TEXT NOT NULL REFERENCES tenants (id),
    state TEXT NOT NULL,
    steps_percent JSONB NOT NULL DEFAULT '[]',
    current_step INTEGER NOT NULL DEFAULT 0,
    verdict TEXT,
    reason TEXT NOT NULL DEFAULT '',
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX ix_rollouts_plan_id ON rollouts (plan_id);

CREATE TABLE rollout_steps (
    id TEXT NOT NULL PRIMARY KEY,
    rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    percent INTEGER NOT NULL,
    state TEXT NOT NULL,
    verdict TEXT,
    reason TEXT NOT NULL DEFAULT '',
    metrics JSONB NOT NULL DEFAULT '{}',
    started_at TIMESTAMPTZ,
    checked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT uq_rollout_steps_position UNIQUE (rollout_id, position)
);
CREATE INDEX ix_rollout_steps_rollout_id ON rollout_steps (rollout_id);

CREATE TABLE outcomes (
    id TEXT NOT NULL PRIMARY KEY,
    plan_id TEXT NOT NULL REFERENCES plans (id),
    rollout_id TEXT REFERENCES rollouts (id),
    tenant TEXT NOT NULL REFERENCES tenants (id),
    realised_deltas JSONB NOT NULL DEFAULT '{}',
    rolled_back BOOLEAN NOT NULL DEFAULT FALSE,
    context_vector JSONB NOT NULL DEFAULT '[]',
    memory_id TEXT,
    notes TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX ix_outcomes_plan_id ON outcomes (plan_id);

CREATE TABLE audit_events (
    id TEXT NOT NULL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    tenant TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX ix_audit_events_at ON audit_events (at);

CREATE TABLE collection_runs (
    id TEXT NOT NULL PRIMARY KEY,
    run_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    tenant TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    status TEXT NOT NULL,
    samples BIGINT NOT NULL DEFAULT 0,
    duration_seconds DOUBLE PRECISION NOT NULL,
    error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT uq_collection_runs_run_provider UNIQUE (run_id, provider)
);
CREATE INDEX ix_collection_runs_run_id ON collection_runs (run_id);
CREATE INDEX ix_collection_runs_started_at ON collection_runs (started_at);
