"""Several processes on one embedded store: two collectors write while a reader reads.

chDB lets one process open a data directory at a time; the store takes short sessions
under an inter-process lock that waits. Here every process is a real interpreter
(``sys.executable``) with a bounded wait on it, so a deadlock fails the test instead of
hanging it.
"""

from __future__ import annotations

import json

from optiinfra.store.timeseries import open_timeseries

BATCHES = 8
INSTANCES_PER_BATCH = 5

WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from optiinfra.models import Sample
from optiinfra.store.timeseries import open_timeseries

url, name, batches, per_batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = open_timeseries(url, lock_timeout=60)
start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
for b in range(batches):
    frame = Sample.to_frame([
        Sample(ts=start + timedelta(minutes=m), provider=name, instance=f"{name}-{b}-{i}",
               metric="gpu_utilization_ratio", value=(b * 31 + i * 7 + m) % 100 / 100)
        for i in range(per_batch) for m in range(10)
    ])
    with store.hold():  # one collection run: write, maybe retry, refresh the summary
        store.write_samples(frame)
        if b % 3 == 0:
            store.write_samples(frame)  # a retried task sends the same batch again
        store.refresh_summary()
print("done", name)
"""

READER = """
import json, sys, time
from optiinfra.store.timeseries import open_timeseries

url, expected, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
store = open_timeseries(url, lock_timeout=60)
seen = []
while time.monotonic() < deadline:
    seen.append(store.row_counts()["samples"])
    store.dashboard_summary()
    if seen[-1] >= expected:
        break
    time.sleep(0.05)
print(json.dumps(seen))
"""


def test_two_writers_and_a_reader_lose_nothing_and_never_hang(ts_url: str, spawn_python) -> None:
    open_timeseries(ts_url).ensure_schema()  # the CLI's `optiinfra init` would do this
    per_writer = BATCHES * INSTANCES_PER_BATCH * 10
    processes = {
        "reader": spawn_python(READER, ts_url, 2 * per_writer, 90),
        "aws": spawn_python(WRITER, ts_url, "aws", BATCHES, INSTANCES_PER_BATCH),
        "gcp": spawn_python(WRITER, ts_url, "gcp", BATCHES, INSTANCES_PER_BATCH),
    }
    outputs = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=150)  # a hang fails here, bounded
        assert process.returncode == 0, f"{name} failed:\n{stderr}"
        outputs[name] = stdout

    assert outputs["aws"].strip() == "done aws" and outputs["gcp"].strip() == "done gcp"
    seen = json.loads(outputs["reader"])
    assert len(seen) >= 1
    assert seen == sorted(seen), "a reader saw rows disappear"
    assert seen[-1] <= 2 * per_writer

    store = open_timeseries(ts_url)
    assert store.row_counts()["samples"] == 2 * per_writer
    per_instance = store.query_df(
        "SELECT provider, instance, count() AS n FROM samples FINAL GROUP BY provider, instance"
    )
    assert len(per_instance) == 2 * BATCHES * INSTANCES_PER_BATCH
    assert set(per_instance["n"]) == {10}
    daily = store.query_df("SELECT sum(n) AS n FROM samples_daily")
    assert int(daily["n"].iloc[0]) == 2 * per_writer  # retried batches not double-counted
    store.refresh_summary()
    assert int(store.dashboard_summary()["n"].sum()) == 2 * per_writer
