"""The three stores: time series (ClickHouse SQL), state (SQLModel), decision memory (Qdrant).

Each is embedded by default (chDB, SQLite, Qdrant local mode under ``OPTIINFRA_HOME``)
and a server when a URL says so.
"""
