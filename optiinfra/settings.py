"""Process settings: where OptiInfra keeps its data and which stores it talks to.

Settings come from ``OPTIINFRA_*`` environment variables; the ``stores:`` section of
``providers.yaml`` fills what the environment leaves unset; defaults fill the rest.
The defaults are embedded stores under ``OPTIINFRA_HOME`` (``~/.optiinfra``), so a
fresh machine needs no server at all.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path("~/.optiinfra").expanduser()


class Settings(BaseSettings):
    """Environment-level settings (``OPTIINFRA_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="OPTIINFRA_", extra="ignore")

    home: Path = Field(
        default_factory=_default_home,
        description="Directory of the embedded stores and the default providers.yaml.",
    )
    config: Path | None = Field(
        default=None,
        description="Path of providers.yaml; default: ./providers.yaml if present, "
        "else <home>/providers.yaml.",
    )
    metrics_url: str | None = Field(
        default=None,
        description="Time-series store: chdb:///path (embedded) or clickhouse://host:8123/db.",
    )
    state_url: str | None = Field(
        default=None,
        description="State store: sqlite:///path or postgresql+psycopg://user@host/db.",
    )
    memory_url: str | None = Field(
        default=None,
        description="Decision memory: qdrant:///path (local mode) or http(s)://host:6333.",
    )
    lock_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="How long a process waits for another to release an embedded store.",
    )

    def default_metrics_url(self) -> str:
        return f"chdb://{self.home.resolve() / 'metrics'}"

    def default_state_url(self) -> str:
        return f"sqlite:///{self.home.resolve() / 'state.db'}"

    def default_memory_url(self) -> str:
        return f"qdrant://{self.home.resolve() / 'memory'}"

    def config_path(self) -> Path:
        if self.config is not None:
            return self.config
        local = Path("providers.yaml")
        return local if local.exists() else self.home / "providers.yaml"


def get_settings() -> Settings:
    """Read settings afresh (cheap; tests change the environment between calls)."""
    return Settings()
