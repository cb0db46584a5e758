"""A test double for a ClickHouse server: its HTTP interface, with chDB executing the SQL.

Only for tests of the ``clickhouse://`` path through the real clickhouse-connect client;
see README.md for what it does and does not carry.
"""

from tests.clickhouse_standin.launcher import StandinError, StandinHandle, start_standin

__all__ = ["StandinError", "StandinHandle", "start_standin"]
