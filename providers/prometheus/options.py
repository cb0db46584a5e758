"""The ``options:`` of a ``prometheus`` provider entry, declared once as a pydantic model.

:data:`OPTIONS` is the same information as rows of data (name, type, default,
description), so the docs table and a test can walk it; the adapter's module docstring
shows it to a reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from optiinfra.config import ProviderConfig
from optiinfra.errors import ConfigError, ConfigIssue
from providers.base import parse_options as parse_provider_options


class ScrapeSettings(BaseModel):
    """The scrape knobs every adapter that reads ``/metrics`` with this package's
    direct-scrape code shares (``prometheus``, ``sandbox``): same names, same meaning."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    concurrency: int = Field(
        default=64,
        ge=1,
        le=1024,
        description="Most targets scraped, or PromQL queries in flight, at once.",
    )
    scrape_settle_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="Direct scrape: when a target has no usable previous reading (first run, "
        "older than cursor_max_age_intervals x interval, counter reset), scrape it again this "
        "much later so rates and quantiles come from this collection. 0: wait for the next.",
    )
    target_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Longest one scrape or one PromQL request may take.",
    )
    quantiles: list[float] = Field(
        default_factory=lambda: [0.5, 0.95, 0.99],
        min_length=1,
        description="Quantiles computed from histograms (label quantile).",
    )
    cursor_max_age_intervals: float = Field(
        default=3.0,
        gt=0,
        le=1000,
        description="A previous reading older than this many collection intervals is not "
        "used for rates (the collector re-scrapes after scrape_settle_seconds instead).",
    )

    @field_validator("quantiles")
    @classmethod
    def _open_interval(cls, values: list[float]) -> list[float]:
        if any(not 0 < q < 1 for q in values):
            raise ValueError("each quantile must be strictly between 0 and 1")
        return sorted(set(values))


class PrometheusOptions(ScrapeSettings):
    """``options:`` accepted by a ``prometheus`` provider entry."""

    engine: Literal["auto", "vllm", "sglang", "tgi"] = Field(
        default="auto",
        description="Which engine's metrics to read: auto detects vLLM, SGLang and TGI from "
        "metric names (vllm:, sglang:, tgi_); DCGM_FI_* and node_* are always read.",
    )
    label_deployment: str = Field(
        default="model_name",
        min_length=1,
        description="Label whose value becomes a sample's deployment (it leaves the labels).",
    )
    deployment: str = Field(
        default="",
        description="Deployment recorded on series without that label (TGI, DCGM).",
    )
    keep_labels: list[str] = Field(
        default_factory=list,
        description="More labels kept when series are summed or averaged (e.g. namespace, "
        "pod); every other label of an engine series is aggregated away.",
    )
    gauges: Literal["mean", "last"] = Field(
        default="mean",
        description="PromQL: a gauge's value over the window is its mean (avg_over_time) or "
        "its last value (last_over_time). A direct scrape always reads the current value.",
    )
    verify_tls: bool = Field(default=True, description="Check TLS certificates (https URLs).")

    @field_validator("keep_labels")
    @classmethod
    def _no_internal(cls, values: list[str]) -> list[str]:
        if any(not v or v in ("le", "quantile", "__name__") for v in values):
            raise ValueError("keep_labels cannot hold le, quantile, __name__ or an empty name")
        return list(dict.fromkeys(values))


@dataclass(frozen=True)
class OptionDoc:
    """One row of the options table."""

    name: str
    type: str
    default: str
    description: str


def _type_name(annotation: object) -> str:
    text = str(annotation).replace("typing.", "")
    return {"<class 'int'>": "int", "<class 'float'>": "float", "<class 'bool'>": "bool",
            "<class 'str'>": "str"}.get(text, text)  # fmt: skip


def _default(name: str) -> str:
    field = PrometheusOptions.model_fields[name]
    value = field.get_default(call_default_factory=True)
    return repr(value) if not isinstance(value, str) else (value or '""')


#: Every option as data: what the docs print and what a test checks against the docstring.
OPTIONS: tuple[OptionDoc, ...] = tuple(
    OptionDoc(name, _type_name(field.annotation), _default(name), field.description or "")
    for name, field in PrometheusOptions.model_fields.items()
)


def parse_options(config: ProviderConfig) -> PrometheusOptions:
    """Validate ``config.options``; problems become a :class:`ConfigError` naming each field."""
    return parse_provider_options(config, PrometheusOptions)


def check_sources(config: ProviderConfig) -> None:
    """A prometheus provider needs somewhere to read from."""
    if config.prometheus_url is None and not config.metrics_urls and config.dcgm_url is None:
        raise ConfigError(
            [
                ConfigIssue(
                    file="providers.yaml",
                    line=None,
                    field=f"providers.{config.name}",
                    message="a prometheus provider needs prometheus_url (PromQL), or "
                    "metrics_urls and/or dcgm_url (direct scrape)",
                )
            ]
        )
