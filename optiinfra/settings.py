"""Process settings: where OptiInfra keeps its data and which stores it talks to.

Settings come from ``OPTIINFRA_*`` environment variables; the ``stores:`` section of
``providers.yaml`` fills what the environment leaves unset; defaults fill the rest.
The defaults are embedded stores under ``OPTIINFRA_HOME`` (``~/.optiinfra``), so a
fresh machine needs no server at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from optiinfra.errors import OptiInfraError

#: The task runners a flow can use (``OPTIINFRA_TASK_RUNNER``).
TaskRunnerKind = Literal["threads", "dask", "ray"]


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
    task_runner: TaskRunnerKind = Field(
        default="threads",
        description="Where a flow runs its tasks: threads (Prefect's thread pool, one "
        "machine), dask (a Dask cluster, prefect-dask) or ray (a Ray cluster, prefect-ray, "
        "an optional extra). Read when each flow run starts.",
    )
    dask_address: str | None = Field(
        default=None,
        description="Address of a running Dask scheduler (tcp://host:8786). Unset: each "
        "flow run starts a local Dask cluster of dask_workers processes and stops it after.",
    )
    dask_workers: int | None = Field(
        default=None,
        ge=1,
        description="Workers of the local Dask cluster (default: Dask's choice, about one "
        "per core). Not allowed with dask_address: size a remote cluster where it runs.",
    )
    dask_processes: bool = Field(
        default=True,
        description="Local Dask workers are processes (true: tasks run in parallel past "
        "the GIL) or threads of the flow's process (false: lighter, no pickling).",
    )
    ray_address: str | None = Field(
        default=None,
        description="Address of a running Ray cluster (ray://host:10001, or auto). Unset: "
        "each flow run starts a local Ray instance.",
    )

    @field_validator("task_runner", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

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
    """Read settings afresh (cheap; tests change the environment between calls).

    A malformed variable is a user's error: it is reported by its environment name
    (``OPTIINFRA_TASK_RUNNER: Input should be 'threads', 'dask' or 'ray'``), without
    a traceback.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"OPTIINFRA_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise OptiInfraError(f"invalid setting: {problems}") from None
