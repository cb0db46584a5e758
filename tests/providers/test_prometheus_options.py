"""The prometheus provider's configuration: options as data, documented, checked early."""

from __future__ import annotations

import pytest

from optiinfra.config import ProviderConfig
from optiinfra.errors import ConfigError
from optiinfra.metrics import SOURCES, mappings
from providers import get_provider_class
from providers.prometheus import OPTIONS, PrometheusOptions, PrometheusProvider
from providers.prometheus import adapter as adapter_module


def test_every_option_is_data_and_documented() -> None:
    assert [o.name for o in OPTIONS] == list(PrometheusOptions.model_fields)
    assert PrometheusProvider.OPTIONS is OPTIONS
    doc = adapter_module.__doc__ or ""
    for option in OPTIONS:
        assert option.description, option.name
        line = next((ln for ln in doc.splitlines() if ln.startswith(option.name + " ")), None)
        assert line is not None, f"{option.name} is missing from the options table"
        assert option.default.strip("'") in line, (option.name, option.default, line)


def test_kinds_and_aliases_reach_the_same_adapter() -> None:
    for kind in ("prometheus", "promql", "scrape"):
        assert get_provider_class(kind) is PrometheusProvider


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"engine": "triton"}, "options.engine"),
        ({"concurrency": 0}, "options.concurrency"),
        ({"quantiles": [0.5, 1.0]}, "options.quantiles"),
        ({"keep_labels": ["le"]}, "options.keep_labels"),
        ({"scrape_setle_seconds": 3}, "options.scrape_setle_seconds"),
    ],
)
def test_bad_options_name_the_provider_and_field(options: dict, field: str) -> None:
    config = ProviderConfig(name="fleet", kind="prometheus", prometheus_url="http://p:9090",
                            options=options)  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        PrometheusProvider(config)
    assert f"providers.fleet.{field}" in str(caught.value)


def test_a_provider_without_any_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs prometheus_url"):
        PrometheusProvider(ProviderConfig(name="fleet", kind="prometheus"))


def test_unknown_credentials_are_refused_without_reading_them() -> None:
    config = ProviderConfig(name="fleet", kind="prometheus", prometheus_url="http://p:9090",
                            credentials={"api_key": "SOME_VAR"})  # fmt: skip
    with pytest.raises(ConfigError, match=r"unknown credential.*api_key"):
        PrometheusProvider(config)


def test_targets_get_metrics_paths_instances_and_no_credentials_in_their_names() -> None:
    config = ProviderConfig(
        name="fleet", kind="prometheus",
        metrics_urls=["http://10.0.0.5:8000", "https://user:pw@gpu.example/metrics",
                      "http://10.0.0.5:8000/"],
        dcgm_url="http://10.0.0.5:9400/metrics",
    )  # fmt: skip
    targets = PrometheusProvider(config).targets
    assert [(t.key, t.instance, t.sources[0]) for t in targets] == [
        ("http://10.0.0.5:8000/metrics", "10.0.0.5:8000", "vllm"),
        ("https://gpu.example/metrics", "gpu.example:443", "vllm"),
        ("http://10.0.0.5:9400/metrics", "10.0.0.5:9400", "dcgm"),
    ]
    assert targets[1].url == "https://user:pw@gpu.example/metrics"
    assert targets[2].sources == ("dcgm",)


def test_windowed_rows_come_before_gauges_feeding_the_same_metric() -> None:
    """The collector keeps the earliest table row per canonical series; where a counter
    and an engine's own gauge feed one metric, the counter's rate must win."""
    for source in SOURCES:
        first: dict[str, str] = {}
        for row in mappings(source):
            first.setdefault(row.canonical, row.derive)
        for row in mappings(source):
            if row.derive != "value" and first[row.canonical] == "value":
                pytest.fail(f"{source}: {row.source_name} comes after a gauge for {row.canonical}")
