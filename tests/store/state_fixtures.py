"""Fixtures for the state-store tests: the same tests on SQLite and on PostgreSQL.

PostgreSQL is the server at ``OPTIINFRA_TEST_PG_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Each test gets a fresh schema
(``opti_test_<random>``, reached through ``options=-csearch_path=...``) dropped
afterwards. If the server cannot be reached the PostgreSQL tests fail, loudly: CI must
provide it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get(
    "OPTIINFRA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A state-store URL whose search_path is a new, empty schema (dropped afterwards)."""
    schema = f"opti_test_{uuid.uuid4().hex[:12]}"
    failure = ""
    try:
        admin = psycopg.connect(_libpq_url(PG_URL), autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        failure = str(exc).strip().splitlines()[0]
    if failure:
        pytest.fail(
            f"PostgreSQL at {make_url(PG_URL).render_as_string(hide_password=True)} is "
            f"unreachable ({failure}). The state-store tests need it: start it "
            "(pg_ctlcluster --skip-systemctl-redirect 15 main start) or set "
            "OPTIINFRA_TEST_PG_URL.",
            pytrace=False,
        )
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
            yield url.render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty state database, on each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    else:
        with postgres_schema() as url:
            yield url


def start_python(code: str, *args: str) -> subprocess.Popen[str]:
    """Start ``python -c code args...`` with the repository importable."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_at_once(
    code: str, argvs: list[list[str]], gate: Path, *, timeout: float = 240
) -> list[str]:
    """Run ``code`` in one process per argument list, released together.

    Each process gets its arguments plus the gate path last, prints ``ready``, waits for
    the gate file, then works. Returns each process's stripped stdout; fails the test
    (with the child's stderr) when one exits non-zero or overruns ``timeout``.
    """
    processes = [start_python(code, *argv, str(gate)) for argv in argvs]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    gate.touch()
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err
        outputs.append(out.strip())
    return outputs
