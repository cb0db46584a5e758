"""Reading the catalog's CSV files, with errors that name the file, row and column."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from importlib import resources

from optiinfra.errors import OptiInfraError


class CatalogError(OptiInfraError):
    """A catalog table is missing, malformed, or has no row for what was asked."""


def read_rows(filename: str) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` for each data row of ``data/<filename>``."""
    ref = resources.files("optiinfra.catalog").joinpath("data", filename)
    try:
        text = ref.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CatalogError(f"catalog table {filename} is missing from the package") from exc
    reader = csv.DictReader(text.splitlines())
    for row in reader:
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}


def number(filename: str, line: int, row: dict[str, str], column: str) -> float | None:
    """The float in ``column``, None when empty; a clear error when it is not a number."""
    raw = row.get(column, "")
    if raw == "":
        return None
    try:
        return float(raw)
    except ValueError as exc:
        raise CatalogError(f"{filename}:{line}: {column}: not a number: {raw!r}") from exc


def required(filename: str, line: int, row: dict[str, str], column: str) -> float:
    """The float in ``column``; a clear error when it is empty or not a number."""
    value = number(filename, line, row, column)
    if value is None:
        raise CatalogError(f"{filename}:{line}: {column}: required value is empty")
    return value


def normalise_key(name: str) -> str:
    """Lookup key for names typed by people: case, spaces, dashes and underscores ignored."""
    return "".join(ch for ch in name.lower() if ch.isalnum() or ch in "./")
