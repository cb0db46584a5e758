"""Bad store URLs, unwritable directories and busy stores: one clear StoreError each,
and nothing already stored is lost."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from optiinfra.errors import OptiInfraError, StoreBusyError, StoreError
from optiinfra.store.timeseries import open_timeseries


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ops:hunter2-secret@db.example:5432/metrics",
        "sqlite:///tmp/metrics.db",
        "/var/lib/metrics",
        "",
    ],
)
def test_an_unsupported_url_names_the_valid_schemes_and_hides_passwords(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_timeseries(url)
    message = caught.value.message
    assert "chdb://" in message and "clickhouse://" in message
    assert "hunter2-secret" not in message
    assert "\n" not in message
    if url.startswith("postgresql"):
        assert "db.example" in message  # the URL is named, without its password


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("chdb://relative/path", "three slashes"),
        ("chdb:relative/path", "must be absolute"),
        ("chdb:///", "must be absolute"),
        ("chdb:///tmp/metrics?mode=ro", "no query"),
    ],
)
def test_a_malformed_chdb_url_is_refused_before_touching_disk(url: str, fragment: str) -> None:
    with pytest.raises(StoreError, match=fragment) as caught:
        open_timeseries(url)
    assert url in caught.value.message
    assert isinstance(caught.value, OptiInfraError)


def test_a_path_under_a_regular_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("precious")
    store = open_timeseries(f"chdb://{blocker / 'metrics'}")
    with pytest.raises(StoreError, match="not-a-directory/metrics"):
        store.ensure_schema()
    assert blocker.read_text() == "precious"


@contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """Make ``directory`` (and everything in it) unwritable for this process.

    Tests run as root in CI, and root ignores permission bits, so ``chmod`` alone
    proves nothing there. As root the tree is made immutable (``chattr +i``), which
    stops root too; as another user ``chmod`` is enough. Either way we check that
    writing really fails before trusting the test.
    """
    paths = [p for p in [directory, *directory.rglob("*")] if not p.is_symlink()]
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        assert chattr, "running as root needs chattr to make a directory unwritable"
        subprocess.run([chattr, "+i", *map(str, paths)], check=True, capture_output=True)
        undo = [chattr, "-i", *map(str, paths)]
    else:
        modes = {p: p.stat().st_mode for p in paths}
        for path in modes:
            path.chmod(modes[path] & ~0o222)
        undo = None
    try:
        with pytest.raises(OSError):
            (directory / "probe").write_text("x")
        yield
    finally:
        if undo:
            subprocess.run(undo, check=True, capture_output=True)
        else:
            for path, mode in modes.items():
                path.chmod(mode)


def test_a_read_only_store_directory_is_a_clear_error_and_data_survives(
    tmp_path: Path, make_samples: Callable
) -> None:
    directory = tmp_path / "metrics"
    url = f"chdb://{directory}"
    batch = make_samples(instances=2, minutes=10)
    open_timeseries(url).write_samples(batch)

    with unwritable(directory):
        store = open_timeseries(url, lock_timeout=2)
        with pytest.raises(StoreError) as caught:
            store.write_samples(make_samples(instances=1, minutes=5, seed=9))
        assert str(directory) in caught.value.message
        assert "\n" not in caught.value.message

    assert open_timeseries(url).row_counts()["samples"] == len(batch)


HOLDER = """
import os, sys
from optiinfra.store.timeseries import open_timeseries
store = open_timeseries(sys.argv[1])
with store.hold():
    print("held", os.getpid(), flush=True)
    sys.stdin.readline()
"""


def test_a_busy_store_waits_then_names_the_holder(tmp_path: Path, spawn_python) -> None:
    url = f"chdb://{tmp_path / 'metrics'}"
    open_timeseries(url).ensure_schema()
    holder = spawn_python(HOLDER, url)
    line = holder.stdout.readline().split()
    assert line[0] == "held", holder.stderr.read()
    try:
        with pytest.raises(StoreBusyError) as caught:
            open_timeseries(url, lock_timeout=0.3).row_counts()
        assert f"pid {line[1]}" in caught.value.message
        assert str(tmp_path / "metrics") in caught.value.message
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    assert open_timeseries(url, lock_timeout=10).row_counts()["samples"] == 0


def test_two_stores_in_one_process_cannot_be_open_at_once(tmp_path: Path) -> None:
    first = open_timeseries(f"chdb://{tmp_path / 'one'}")
    second = open_timeseries(f"chdb://{tmp_path / 'two'}")
    with first.hold(), pytest.raises(StoreError, match="one data directory per process"):
        second.ensure_schema()
    assert second.ensure_schema() >= 1  # fine once the first session is closed
