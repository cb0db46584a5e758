"""One place that turns settings + ``providers.yaml`` into open stores.

Precedence for every store URL: ``OPTIINFRA_*_URL`` environment variable, then the
``stores:`` section of ``providers.yaml``, then the embedded default under
``OPTIINFRA_HOME``. Flows, tasks and the CLI all go through :func:`load_runtime`, so
they can never disagree about where the data lives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from optiinfra.config import OptiInfraConfig
from optiinfra.settings import Settings, get_settings

if TYPE_CHECKING:
    from optiinfra.store.memory import DecisionMemory
    from optiinfra.store.state import StateStore
    from optiinfra.store.timeseries import TimeSeriesStore


@dataclass(frozen=True)
class Runtime:
    """Settings, configuration and the store URLs they resolve to."""

    settings: Settings
    config: OptiInfraConfig
    #: The providers.yaml that was read, or None when the built-in default is in use.
    config_path: Path | None

    @property
    def metrics_url(self) -> str:
        return (
            self.settings.metrics_url
            or self.config.stores.metrics_url
            or self.settings.default_metrics_url()
        )

    @property
    def state_url(self) -> str:
        return (
            self.settings.state_url
            or self.config.stores.state_url
            or self.settings.default_state_url()
        )

    @property
    def memory_url(self) -> str:
        return (
            self.settings.memory_url
            or self.config.stores.memory_url
            or self.settings.default_memory_url()
        )

    def open_timeseries(self) -> TimeSeriesStore:
        from optiinfra.store.timeseries import open_timeseries

        return open_timeseries(self.metrics_url, lock_timeout=self.settings.lock_timeout_seconds)

    def open_state(self) -> StateStore:
        from optiinfra.store.state import open_state

        return open_state(self.state_url)

    def open_memory(self) -> DecisionMemory:
        from optiinfra.store.memory import open_memory

        return open_memory(self.memory_url, lock_timeout=self.settings.lock_timeout_seconds)


def load_runtime(
    config_path: str | Path | None = None,
    *,
    known_kinds: Iterable[str] | None = None,
    check_env: bool = True,
    settings: Settings | None = None,
) -> Runtime:
    """Read settings and the configuration file.

    With no explicit path and no ``providers.yaml`` where settings look for one, the
    built-in default configuration (the ``local`` provider only) is used, so a fresh
    machine runs with nothing to write first. An explicit path that does not exist is
    an error, not a silent fallback.
    """
    from optiinfra.config import default_config, load_config

    settings = settings or get_settings()
    if config_path is None:
        candidate = settings.config_path()
        if not candidate.exists() and settings.config is None:
            return Runtime(settings=settings, config=default_config(), config_path=None)
        config_path = candidate
    path = Path(config_path)
    config = load_config(path, known_kinds=known_kinds, check_env=check_env)
    return Runtime(settings=settings, config=config, config_path=path)
