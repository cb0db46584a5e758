"""User-facing errors.

Every error a user can cause (bad config, wrong store URL, unwritable directory, a busy
store) is an :class:`OptiInfraError`. The CLI prints its message on one line and exits
non-zero, with no traceback unless ``--debug`` is given; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class OptiInfraError(Exception):
    """An error whose message is meant for the user, not a developer."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file, located as precisely as we can.

    ``line`` is 1-based and ``None`` when the problem has no single place in the file
    (a missing required section, say).
    """

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(OptiInfraError):
    """A configuration file has one or more problems; all of them are listed."""

    exit_code = 2

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        count = len(self.issues)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in configuration:\n{lines}")


class StoreError(OptiInfraError):
    """A store cannot be opened or used: bad URL, unreachable server, unwritable path."""

    exit_code = 3


class StoreBusyError(StoreError):
    """The embedded store stayed locked by another process for longer than we wait."""
