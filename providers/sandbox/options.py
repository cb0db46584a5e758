"""The ``options:`` of a ``sandbox`` provider entry, and the scrape settings they imply.

The sandbox's metrics are read with the prometheus adapter's direct-scrape code, so the
scrape knobs here are the same knobs with the same meaning (and defaults);
:func:`scrape_options` turns them into the :class:`PrometheusOptions` that code takes.
"""

from __future__ import annotations

from pydantic import AnyHttpUrl, Field

from optiinfra.config import ProviderConfig
from providers.base import parse_options
from providers.prometheus.options import PrometheusOptions, ScrapeSettings

#: The label the scrape treats as "the deployment". No sandbox series carries it, so every
#: engine series is aggregated per server (``model_name`` is dropped: deployments of one
#: model share it) and the deployment comes from the control API instead.
DEPLOYMENT_LABEL = "deployment"


class SandboxOptions(ScrapeSettings):
    """``options:`` accepted by a ``sandbox`` provider entry (the scrape knobs are the
    prometheus adapter's, :class:`ScrapeSettings`)."""

    control_url: AnyHttpUrl = Field(
        description="Base URL of the sandbox control API, e.g. http://127.0.0.1:44351 "
        "(`control` in $OPTIINFRA_HOME/sandbox/state.json; a trailing /sandbox is accepted).",
    )
    deployments: list[str] = Field(
        default_factory=list,
        description="Collect only these deployments (default: every deployment), e.g. one "
        "provider entry per tenant.",
    )
    concurrency: int = Field(
        default=32, ge=1, le=1024, description="Most HTTP requests to servers in flight at once."
    )

    @property
    def base_url(self) -> str:
        """The control API root without a trailing ``/`` or ``/sandbox``."""
        return str(self.control_url).rstrip("/").removesuffix("/sandbox")


def parse_sandbox_options(config: ProviderConfig) -> SandboxOptions:
    """Validate ``config.options``; a missing or malformed ``control_url`` is a
    :class:`~optiinfra.errors.ConfigError` naming ``providers.<name>.options.control_url``."""
    return parse_options(config, SandboxOptions)


def scrape_options(options: SandboxOptions) -> PrometheusOptions:
    """The direct-scrape settings of the prometheus adapter that read the sandbox."""
    return PrometheusOptions(
        concurrency=options.concurrency,
        scrape_settle_seconds=options.scrape_settle_seconds,
        target_timeout_seconds=options.target_timeout_seconds,
        label_deployment=DEPLOYMENT_LABEL,
        quantiles=options.quantiles,
        cursor_max_age_intervals=options.cursor_max_age_intervals,
    )
