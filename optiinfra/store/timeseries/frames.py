"""Turn record frames (``models.*.COLUMNS``) into the exact frames the tables take.

Everything here is vectorised: a day of a large fleet is ~10 M rows, so nothing may
touch rows one by one except label dictionaries, which are converted once per distinct
value (categorical frames: once per category).

Labels are stored as canonical JSON text (keys sorted, no spaces, ``{}`` when empty):
a ``LowCardinality(String)`` column that can sit in the ordering key. A
``Map(String, String)`` column measured 3x slower to insert in chDB and cannot be a
key column.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from optiinfra.errors import StoreError


def canonical_labels(value: Any, *, table: str) -> str:
    """One labels value (dict, JSON text, None) → canonical JSON text."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "{}"
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            raise StoreError(
                f"{table}.labels: {value[:80]!r} is neither a dict nor JSON object text"
            ) from None
    if hasattr(value, "items") and not isinstance(value, dict):
        value = dict(value.items())
    elif isinstance(value, list):  # Arrow map values come back as [(key, value), ...]
        value = dict(value)
    if not isinstance(value, dict):
        raise StoreError(f"{table}.labels: expected a dict of strings, got {type(value).__name__}")
    return json.dumps(
        {str(k): str(v) for k, v in value.items()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def labels_column(series: pd.Series, *, table: str) -> pd.Categorical:
    """A labels column → a categorical of canonical JSON, converting each distinct value once."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        categories = [canonical_labels(c, table=table) for c in series.cat.categories]
        if (codes < 0).any():
            categories.append("{}")
            codes = np.where(codes < 0, len(categories) - 1, codes)
        return _categorical(codes, categories)
    if isinstance(series.dtype, pd.ArrowDtype):
        series = pd.Series(series.array.to_pylist(), dtype=object)
    cache: dict[Any, int] = {}
    categories: list[str] = []
    by_text: dict[str, int] = {}
    codes = np.empty(len(series), dtype=np.int32)
    for row, value in enumerate(series.to_numpy(dtype=object)):
        key = _hashable(value)
        code = cache.get(key) if key is not None else None
        if code is None:
            text = canonical_labels(value, table=table)
            code = by_text.setdefault(text, len(categories))
            if code == len(categories):
                categories.append(text)
            if key is not None:
                cache[key] = code
        codes[row] = code
    return _categorical(codes, categories)


def _categorical(codes: np.ndarray, categories: list[str]) -> pd.Categorical:
    unique = list(dict.fromkeys(categories))
    if len(unique) != len(categories):  # two inputs canonicalised to one text
        remap = np.array([unique.index(c) for c in categories], dtype=np.int32)
        codes, categories = remap[codes], unique
    return pd.Categorical.from_codes(codes, categories=categories)


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        try:
            return ("d", frozenset(value.items()))
        except TypeError:
            return None
    if isinstance(value, str) or value is None:
        return ("s", value)
    return None


def check_columns(frame: pd.DataFrame, expected: Sequence[str], *, table: str) -> None:
    """Exactly ``expected`` columns, or one error naming what is missing and extra."""
    if not isinstance(frame, pd.DataFrame):
        raise StoreError(f"{table}: expected a pandas DataFrame, got {type(frame).__name__}")
    present = [str(c) for c in frame.columns]
    missing = [c for c in expected if c not in present]
    extra = [c for c in present if c not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing columns {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected columns {', '.join(extra)}")
        raise StoreError(
            f"{table} frame: {'; '.join(parts)} (expected exactly: {', '.join(expected)})"
        )


def utc_times(series: pd.Series, *, column: str, nullable: bool = False) -> pd.Series:
    """Any datetime-like column → ``datetime64[ms, UTC]`` (naive values are taken as UTC)."""
    try:
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            out = series.dt.tz_convert("UTC")
        elif pd.api.types.is_datetime64_dtype(series.dtype):
            out = series.dt.tz_localize("UTC")
        else:
            out = pd.to_datetime(series, utc=True, format="mixed")
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{column}: not a date-time column ({exc})") from None
    if not nullable and out.isna().any():
        raise StoreError(f"{column}: {int(out.isna().sum())} missing date-time value(s)")
    return out.astype("datetime64[ms, UTC]")


def text_column(series: pd.Series) -> pd.Series | pd.Categorical:
    """Strings (or enums) with missing values as ``""``; categoricals stay categorical."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = [str(c) for c in series.cat.categories]
        codes = series.cat.codes.to_numpy()
        if (codes < 0).any():
            categories.append("")
            codes = np.where(codes < 0, len(categories) - 1, codes)
        return _categorical(codes, categories)
    values = series.astype(object).where(series.notna(), "")
    return values.map(str) if len(values) else values.astype(str)


def float_column(series: pd.Series, *, column: str, nullable: bool = False) -> pd.Series:
    try:
        out = pd.to_numeric(series, errors="raise").astype("float64")
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{column}: not numeric ({exc})") from None
    if not nullable and out.isna().any():
        raise StoreError(f"{column}: {int(out.isna().sum())} missing value(s)")
    return out


def content_token(table: str, frame: pd.DataFrame) -> str:
    """A hash of the batch's content: the same frame again gives the same token.

    Numeric, date-time and categorical columns are hashed from their buffers (a day of
    a large fleet hashes in tens of milliseconds); other columns through
    ``pd.util.hash_pandas_object``. The same rows built another way (object instead of
    categorical, another order) get another token: then only the raw tables'
    replacing merge deduplicates them, as for any overlapping batch.
    """
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{table}\x00{len(frame)}".encode())
    for name in frame.columns:
        column = frame[name]
        digest.update(f"\x00{name}\x00{column.dtype}\x00".encode())
        if isinstance(column.dtype, pd.CategoricalDtype):
            digest.update("\x1f".join(map(str, column.cat.categories)).encode())
            digest.update(np.ascontiguousarray(column.cat.codes.to_numpy()).tobytes())
        elif isinstance(column.dtype, pd.DatetimeTZDtype):
            digest.update(np.ascontiguousarray(column.array.asi8).tobytes())  # NaT is a fixed int
        elif isinstance(column.dtype, np.dtype) and column.dtype.kind in "biufmM":
            digest.update(np.ascontiguousarray(column.to_numpy()).tobytes())
        else:
            digest.update(pd.util.hash_pandas_object(column, index=False).to_numpy().tobytes())
    return digest.hexdigest()
