"""The public request traces the sandbox replays, read once into numpy arrays.

Three traces ship with the package (``data/traces/``, sources and licences in its
``SOURCES.md``), gzip-compressed byte-for-byte copies of the published files:

- ``azure-conv`` and ``azure-code``: Azure's 2023 LLM inference traces (Splitwise,
  ISCA '24), one CSV row per request: ``TIMESTAMP,ContextTokens,GeneratedTokens``.
- ``mooncake``: Mooncake's conversation trace (FAST '25), one JSON object per line:
  ``timestamp`` (ms), ``input_length``, ``output_length`` and ``hash_ids``, the ids of the
  prompt's 512-token blocks, so that equal ids mean an equal prefix (what a prefix cache
  can reuse).

A :class:`Trace` holds columns, not row objects, because schedules resample and loop
them with vectorised numpy; the prefix blocks are stored flat with offsets (CSR form),
since a list per request would cost ~12,000 Python lists for nothing.

Example::

    trace = load_trace("mooncake")
    len(trace), trace.span_s          # (12031, 3536.999)
    trace.blocks(0)                   # array([0, 1, ..., 13])
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd

from optiinfra.errors import OptiInfraError
from optiinfra.sandbox.spec import TraceName

#: The bundled trace files, by the name a fleet YAML uses (``load.trace``).
TRACE_FILES: dict[str, str] = {
    "azure-conv": "AzureLLMInferenceTrace_conv.csv.gz",
    "azure-code": "AzureLLMInferenceTrace_code.csv.gz",
    "mooncake": "mooncake_conversation_trace.jsonl.gz",
}

#: Tokens per Mooncake prefix block (the trace's own block size).
MOONCAKE_BLOCK_TOKENS = 512

_AZURE_HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_AZURE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_MOONCAKE_KEYS = ("timestamp", "input_length", "output_length", "hash_ids")

assert set(TRACE_FILES) == set(get_args(TraceName)), "every TraceName needs a file"


class TraceError(OptiInfraError):
    """A trace file is missing or has a malformed row (the message names file and line)."""


@dataclass(frozen=True, eq=False)
class Trace:
    """One request trace as read-only columns, sorted by arrival.

    ``arrival_s`` counts seconds from the trace's first request (so it starts at 0).
    ``block_ids``/``block_offsets`` are ``None`` for traces without prefix information;
    otherwise request ``i``'s blocks are ``block_ids[block_offsets[i]:block_offsets[i+1]]``.
    """

    name: str
    source: str
    arrival_s: np.ndarray  # float64
    prompt_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64
    block_ids: np.ndarray | None = None  # int64, flat
    block_offsets: np.ndarray | None = None  # int64, len(self) + 1
    block_tokens: int = MOONCAKE_BLOCK_TOKENS

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def span_s(self) -> float:
        """Seconds from the first to the last arrival."""
        return float(self.arrival_s[-1]) if len(self) else 0.0

    @property
    def has_blocks(self) -> bool:
        return self.block_ids is not None

    @property
    def max_block_id(self) -> int:
        """The largest prefix block id (-1 when the trace has none)."""
        if self.block_ids is None or self.block_ids.size == 0:
            return -1
        return int(self.block_ids.max())

    def blocks(self, i: int) -> np.ndarray | None:
        """Prefix block ids of request ``i`` (a read-only view), or None."""
        if self.block_ids is None or self.block_offsets is None:
            return None
        return self.block_ids[self.block_offsets[i] : self.block_offsets[i + 1]]

    def to_frame(self) -> pd.DataFrame:
        """The trace as a DataFrame (``hash_ids`` column of lists for Mooncake)."""
        frame = pd.DataFrame(
            {
                "arrival_s": self.arrival_s,
                "prompt_tokens": self.prompt_tokens,
                "output_tokens": self.output_tokens,
            }
        )
        if self.block_ids is not None and self.block_offsets is not None:
            frame["hash_ids"] = [
                self.block_ids[a:b].tolist()
                for a, b in zip(self.block_offsets[:-1], self.block_offsets[1:], strict=True)
            ]
        return frame


@cache
def load_trace(name: str) -> Trace:
    """The bundled trace ``name`` (parsed once per process, then shared read-only)."""
    if name not in TRACE_FILES:
        valid = ", ".join(sorted(TRACE_FILES))
        raise TraceError(f"unknown trace {name!r}; valid traces: {valid}")
    filename = TRACE_FILES[name]
    ref = resources.files("optiinfra.sandbox") / "data" / "traces" / filename
    if filename.endswith((".jsonl", ".jsonl.gz")):
        return read_mooncake_jsonl(ref, name=name)
    return read_azure_csv(ref, name=name)


def read_azure_csv(path: Path | Traversable, name: str | None = None) -> Trace:
    """Read an Azure LLM inference trace CSV (plain or ``.gz``)."""
    label = path.name
    lines = _read_text(path).splitlines()
    if not lines:
        raise TraceError(f"{label}: empty file, expected header {','.join(_AZURE_HEADER)}")
    header = tuple(cell.strip() for cell in lines[0].split(","))
    if header != _AZURE_HEADER:
        raise TraceError(
            f"{label}:1: header is {','.join(header)!r}, expected {','.join(_AZURE_HEADER)!r}"
        )
    stamps: list[str] = []
    prompt: list[int] = []
    output: list[int] = []
    line_numbers: list[int] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != 3:
            raise TraceError(f"{label}:{number}: expected 3 fields, found {len(cells)}: {line!r}")
        stamps.append(cells[0])
        prompt.append(_count(label, number, "ContextTokens", cells[1]))
        output.append(_count(label, number, "GeneratedTokens", cells[2]))
        line_numbers.append(number)
    times = pd.to_datetime(
        pd.Series(stamps, dtype=object), format=_AZURE_TIME_FORMAT, errors="coerce"
    )
    bad = np.flatnonzero(times.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise TraceError(
            f"{label}:{line_numbers[i]}: TIMESTAMP: not a time like "
            f"'2023-11-16 18:15:46.6805900': {stamps[i]!r}"
        )
    ns = times.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    seconds = (ns - ns.min()) / 1e9 if ns.size else np.zeros(0)
    return _finish(name or label, label, seconds, np.asarray(prompt), np.asarray(output))


def read_mooncake_jsonl(path: Path | Traversable, name: str | None = None) -> Trace:
    """Read a Mooncake trace (JSON lines, plain or ``.gz``); ``timestamp`` is in ms."""
    label = path.name
    stamps: list[float] = []
    prompt: list[int] = []
    output: list[int] = []
    lengths: list[int] = []
    flat: list[int] = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{label}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise TraceError(f"{label}:{number}: expected a JSON object")
        missing = [key for key in _MOONCAKE_KEYS if key not in row]
        if missing:
            raise TraceError(f"{label}:{number}: missing field(s) {', '.join(missing)}")
        stamp = row["timestamp"]
        if isinstance(stamp, bool) or not isinstance(stamp, int | float) or stamp < 0:
            raise TraceError(f"{label}:{number}: timestamp: not a non-negative number: {stamp!r}")
        ids = row["hash_ids"]
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids
        ):
            raise TraceError(f"{label}:{number}: hash_ids: not a list of non-negative integers")
        stamps.append(float(stamp))
        prompt.append(_count(label, number, "input_length", row["input_length"]))
        output.append(_count(label, number, "output_length", row["output_length"]))
        lengths.append(len(ids))
        flat.extend(ids)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ms = np.asarray(stamps, dtype=np.float64)
    seconds = (ms - ms.min()) / 1000.0 if ms.size else ms
    return _finish(
        name or label,
        label,
        seconds,
        np.asarray(prompt),
        np.asarray(output),
        np.asarray(flat, dtype=np.int64),
        offsets,
    )


def _read_text(path: Path | Traversable) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise TraceError(f"trace file {path} is missing (is the package installed whole?)") from exc
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise TraceError(f"{path.name}: not a readable gzip file ({exc})") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path.name}: not UTF-8 text (byte {exc.start})") from exc


def _count(label: str, number: int, field: str, raw: object) -> int:
    """A non-negative integer token count, or an error naming file, line and field."""
    if isinstance(raw, str):
        try:
            value = int(raw.strip())
        except ValueError:
            raise TraceError(f"{label}:{number}: {field}: not an integer: {raw!r}") from None
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    else:
        raise TraceError(f"{label}:{number}: {field}: not an integer: {raw!r}")
    if value < 0:
        raise TraceError(f"{label}:{number}: {field}: negative token count {value}")
    return value


def _finish(
    name: str,
    source: str,
    seconds: np.ndarray,
    prompt: np.ndarray,
    output: np.ndarray,
    block_ids: np.ndarray | None = None,
    block_offsets: np.ndarray | None = None,
) -> Trace:
    """Sort by arrival (stable: published order breaks ties), freeze and wrap the columns."""
    order = np.argsort(seconds, kind="stable")
    sorted_already = bool(np.all(order == np.arange(order.size)))
    if not sorted_already and block_ids is not None and block_offsets is not None:
        starts, ends = block_offsets[:-1][order], block_offsets[1:][order]
        block_ids = (
            np.concatenate([block_ids[a:b] for a, b in zip(starts, ends, strict=True)])
            if order.size
            else block_ids
        )
        block_offsets = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
    columns = [
        np.ascontiguousarray(seconds[order], dtype=np.float64),
        np.ascontiguousarray(prompt[order], dtype=np.int64),
        np.ascontiguousarray(output[order], dtype=np.int64),
    ]
    extra = [block_ids, block_offsets]
    for array in [*columns, *extra]:
        if array is not None:
            array.flags.writeable = False
    return Trace(name, source, *columns, *extra)
