"""The bundled request traces: verbatim copies, read into the right columns, bad rows named."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from optiinfra.sandbox.traces import (
    TRACE_FILES,
    TraceError,
    load_trace,
    read_azure_csv,
    read_mooncake_jsonl,
)

TRACE_DIR = resources.files("optiinfra.sandbox") / "data" / "traces"


def test_bundled_files_are_the_sources_named_in_sources_md() -> None:
    sources = (TRACE_DIR / "SOURCES.md").read_text("utf-8")
    for filename in TRACE_FILES.values():
        row = next(line for line in sources.splitlines() if line.startswith(f"| `{filename}`"))
        expected = re.findall(r"`([0-9a-f]{64})`", row)
        assert len(expected) == 1, row
        content = gzip.decompress((TRACE_DIR / filename).read_bytes())
        assert hashlib.sha256(content).hexdigest() == expected[0], filename


@pytest.mark.parametrize(
    ("name", "rows", "span_s", "first"),
    [
        ("azure-conv", 19_366, 3501.721937, (374, 44)),
        ("azure-code", 8_819, 3435.948056, (4808, 10)),
        ("mooncake", 12_031, 3536.999, (6758, 500)),
    ],
)
def test_each_trace_reads_all_rows_into_sorted_columns(
    name: str, rows: int, span_s: float, first: tuple[int, int]
) -> None:
    trace = load_trace(name)
    assert len(trace) == rows
    assert trace.arrival_s[0] == 0.0
    assert trace.span_s == pytest.approx(span_s, abs=1e-6)
    assert np.all(np.diff(trace.arrival_s) >= 0)
    assert (int(trace.prompt_tokens[0]), int(trace.output_tokens[0])) == first
    assert trace.arrival_s.dtype == np.float64 and trace.prompt_tokens.dtype == np.int64
    frame = trace.to_frame()
    assert len(frame) == rows
    expected_columns = ["arrival_s", "prompt_tokens", "output_tokens"]
    if name == "mooncake":
        expected_columns.append("hash_ids")
    assert list(frame.columns) == expected_columns


def test_azure_offsets_are_seconds_from_the_first_timestamp() -> None:
    trace = load_trace("azure-conv")
    # 2023-11-16 18:15:46.6805900 -> 18:15:50.9951690 and 19:14:08.4025270 (the last row).
    assert trace.arrival_s[1] == pytest.approx(4.314579, abs=1e-6)
    assert int(trace.prompt_tokens[-1]) == 197 and int(trace.output_tokens[-1]) == 183


def test_mooncake_keeps_prefix_blocks_per_request() -> None:
    trace = load_trace("mooncake")
    assert trace.blocks(0).tolist() == list(range(14))
    assert trace.blocks(1).tolist()[:2] == [0, 14]
    lengths = np.diff(trace.block_offsets)
    # Every prompt is covered by its blocks: ceil(input_length / 512) of them.
    assert np.array_equal(lengths, -(-trace.prompt_tokens // trace.block_tokens))
    assert trace.max_block_id == 182_789
    assert load_trace("azure-code").blocks(0) is None


def test_traces_are_parsed_once_and_read_only() -> None:
    trace = load_trace("mooncake")
    assert load_trace("mooncake") is trace
    with pytest.raises(ValueError):
        trace.arrival_s[0] = 1.0
    with pytest.raises(ValueError):
        trace.block_ids[0] = 1


def test_unknown_trace_lists_the_valid_ones() -> None:
    with pytest.raises(TraceError, match="azure-code, azure-conv, mooncake"):
        load_trace("burstgpt")


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_azure_reader_reads_plain_and_gzip_and_sorts(tmp_path: Path, suffix: str) -> None:
    text = HEADER + "2023-11-16 18:00:02.5000000,10,3\n2023-11-16 18:00:00.0000000,7,0\n"
    trace = read_azure_csv(_write(tmp_path / f"t{suffix}", text))
    assert trace.arrival_s.tolist() == [0.0, 2.5]
    assert trace.prompt_tokens.tolist() == [7, 10]
    assert trace.output_tokens.tolist() == [0, 3]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("2023-11-16 18:00:00.0,1,2\n2023-11-16 18:00:01.0,x,2\n", r"t\.csv:3: ContextTokens"),
        ("2023-11-16 18:00:00.0,1,2\n2023-11-16 18:00:01.0,1\n", r"t\.csv:3: expected 3 fields"),
        ("2023-11-16 18:00:00.0,1,-2\n", r"t\.csv:2: GeneratedTokens: negative"),
        ("yesterday,1,2\n", r"t\.csv:2: TIMESTAMP: not a time"),
    ],
)
def test_azure_reader_names_file_and_line_of_a_bad_row(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(TraceError, match=message):
        read_azure_csv(_write(tmp_path / "t.csv", HEADER + body))


def test_azure_reader_checks_the_header(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"t\.csv:1: header"):
        read_azure_csv(_write(tmp_path / "t.csv", "time,in,out\n"))


def _line(stamp: object = 0, inp: object = 600, out: object = 5, ids: object = None) -> str:
    ids = [0, 1] if ids is None else ids
    return json.dumps(
        {"timestamp": stamp, "input_length": inp, "output_length": out, "hash_ids": ids}
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_mooncake_reader_sorts_rows_with_their_blocks(tmp_path: Path, suffix: str) -> None:
    text = "\n".join([_line(3000, ids=[5, 6]), _line(1000, inp=100, ids=[7]), ""]) + "\n"
    trace = read_mooncake_jsonl(_write(tmp_path / f"m{suffix}", text))
    assert trace.arrival_s.tolist() == [0.0, 2.0]
    assert trace.prompt_tokens.tolist() == [100, 600]
    assert trace.blocks(0).tolist() == [7] and trace.blocks(1).tolist() == [5, 6]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"m\.jsonl:2: not valid JSON"),
        ('{"timestamp": 1, "input_length": 3}', r"m\.jsonl:2: missing field\(s\) output_length"),
        (_line(ids=[1, "a"]), r"m\.jsonl:2: hash_ids"),
        (_line(inp=1.5), r"m\.jsonl:2: input_length: not an integer"),
        (_line(stamp=-1), r"m\.jsonl:2: timestamp"),
    ],
)
def test_mooncake_reader_names_file_and_line_of_a_bad_row(
    tmp_path: Path, line: str, message: str
) -> None:
    with pytest.raises(TraceError, match=message):
        read_mooncake_jsonl(_write(tmp_path / "m.jsonl", _line() + "\n" + line + "\n"))


def test_a_missing_or_corrupt_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="missing"):
        read_azure_csv(tmp_path / "absent.csv")
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(TraceError, match=r"bad\.csv\.gz: not a readable gzip"):
        read_azure_csv(tmp_path / "bad.csv.gz")
