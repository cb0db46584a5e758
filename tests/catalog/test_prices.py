"""The GPU price table and quotes: verbatim prices, GCP host + GPU sums, clear errors."""

from __future__ import annotations

import csv
import hashlib
import math
import re
from importlib import resources

import pytest

from optiinfra.catalog import gpu_specs
from optiinfra.catalog._tables import CatalogError
from optiinfra.catalog.prices import MARKETS, PriceQuote, price_table, quote

DATA = resources.files("optiinfra.catalog").joinpath("data")
PRICE_FILES = (
    "aws_gpu_prices.csv",
    "gcp_gpu_prices.csv",
    "azure_gpu_prices.csv",
    "skypilot_catalog_v8_lambda_runpod_subset.csv",
)
# Offerings whose catalog spot price equals on-demand (data/SOURCES.md says why).
SPOT_EQUALS_ON_DEMAND = {
    ("aws", "p5.48xlarge"),
    ("azure", "Standard_ND96isr_H100_v5"),
    ("azure", "Standard_NC40ads_H100_v5"),
    ("runpod", "1x_A100-80GB_SECURE"),
    ("runpod", "2x_A100-80GB_SECURE"),
}


def _raw_line(filename: str, line: int) -> dict[str, str]:
    """The row at a 1-based line of a data file, keyed by its header (comments skipped)."""
    lines = DATA.joinpath(filename).read_text(encoding="utf-8").splitlines()
    header_line = next(i for i, text in enumerate(lines) if not text.startswith("#"))
    header = next(csv.reader([lines[header_line]]))
    return dict(zip(header, next(csv.reader([lines[line - 1]])), strict=True))


@pytest.mark.parametrize("filename", PRICE_FILES)
def test_price_files_are_the_documented_copies(filename: str) -> None:
    sources = DATA.joinpath("SOURCES.md").read_text(encoding="utf-8")
    listed = re.search(rf"\| `{re.escape(filename)}` \|.*\| `([0-9a-f]{{64}})` \|", sources)
    assert listed, f"{filename} has no SHA-256 in SOURCES.md"
    digest = hashlib.sha256(DATA.joinpath(filename).read_bytes()).hexdigest()
    assert digest == listed.group(1)


def test_table_has_the_normalised_columns_and_every_cloud() -> None:
    table = price_table()
    assert list(table.columns) == [
        "cloud", "region", "zone", "instance_type", "accelerator", "gpu", "gpu_count",
        "vcpus", "memory_gib", "on_demand_usd_per_hour", "spot_usd_per_hour", "source",
    ]  # fmt: skip
    assert set(table["cloud"]) == {"aws", "gcp", "azure", "lambda", "runpod"}
    # 100 AWS + 11 Azure + 12 Lambda/RunPod rows; GCP: one per host row (26).
    assert len(table) == 100 + 11 + 12 + 26


def test_price_table_is_a_copy() -> None:
    mine = price_table()
    mine.loc[:, "on_demand_usd_per_hour"] = 0.0
    assert (price_table()["on_demand_usd_per_hour"].dropna() > 0).all()


@pytest.mark.parametrize(
    ("cloud", "instance_type", "zone_or_region", "on_demand", "spot"),
    [
        ("aws", "p4d.24xlarge", "use1-az1", 21.957642, 6.289),
        ("aws", "p4d.24xlarge", "usw2-az1", 21.95764, 9.118),
        ("aws", "p5e.48xlarge", "usw2-az3", math.nan, 24.9358),
        ("aws", "p3.2xlarge", "use1-az3", 3.06, math.nan),
        ("azure", "Standard_NC4as_T4_v3", "eastus", 0.526, 0.062699),
        ("lambda", "gpu_1x_a6000", "europe-central-1", 1.09, math.nan),
        ("runpod", "1x_A100-80GB_SECURE", "US-TX-1", 1.39, 1.39),
    ],
)
def test_known_rows_keep_their_verbatim_prices(
    cloud: str, instance_type: str, zone_or_region: str, on_demand: float, spot: float
) -> None:
    table = price_table()
    rows = table[
        (table["cloud"] == cloud)
        & (table["instance_type"] == instance_type)
        & ((table["zone"] == zone_or_region) | (table["region"] == zone_or_region))
    ]
    assert len(rows) == 1
    row = rows.iloc[0]
    for got, want in ((row["on_demand_usd_per_hour"], on_demand), (row["spot_usd_per_hour"], spot)):
        assert (math.isnan(got) and math.isnan(want)) or got == want
    filename, line = row["source"].split(":")
    assert _raw_line(filename, int(line))["InstanceType"] == instance_type


def test_gcp_offerings_are_host_plus_gpus_of_the_same_zone() -> None:
    table = price_table()
    gcp = table[table["cloud"] == "gcp"]
    assert set(gcp["instance_type"]) == {
        "a2-highgpu-1g", "a2-ultragpu-1g", "a3-highgpu-8g", "g2-standard-4", "g2-standard-48",
    }  # fmt: skip
    for _, row in gcp.iterrows():
        filename, lines = row["source"].split(":")
        host_line, gpu_line = (int(n) for n in lines.split("+"))
        host, gpu = _raw_line(filename, host_line), _raw_line(filename, gpu_line)
        assert host["InstanceType"] == row["instance_type"] and gpu["InstanceType"] == ""
        assert host["AvailabilityZone"] == gpu["AvailabilityZone"] == row["zone"]
        assert int(gpu["AcceleratorCount"]) == row["gpu_count"]
        expected = round(float(host["Price"]) + float(gpu["Price"]), 6)
        assert row["on_demand_usd_per_hour"] == pytest.approx(expected, abs=1e-12)
    known = gcp[(gcp["instance_type"] == "g2-standard-4") & (gcp["zone"] == "us-central1-a")]
    assert known.iloc[0]["on_demand_usd_per_hour"] == 0.70683  # 0.14679 + 0.56004
    assert known.iloc[0]["spot_usd_per_hour"] == 0.28184  # 0.05874 + 0.2231


def test_gpu_names_are_spec_names_where_the_spec_table_has_them() -> None:
    table = price_table()
    unmapped = set(table["gpu"]) - set(gpu_specs())
    assert unmapped == {"V100", "A6000"}
    variants = table.set_index(["cloud", "instance_type"])["gpu"].to_dict()
    assert variants[("azure", "Standard_NC24ads_A100_v4")] == "A100 80GB PCIe"
    assert variants[("azure", "Standard_ND96amsr_A100_v4")] == "A100 80GB SXM"
    assert variants[("azure", "Standard_NC40ads_H100_v5")] == "H100 NVL"
    assert variants[("aws", "p4d.24xlarge")] == "A100 40GB SXM"
    assert variants[("runpod", "1x_A100-80GB_SECURE")] == "A100 80GB PCIe"


def test_azure_nd_h100_count_is_corrected_to_eight() -> None:
    table = price_table()
    row = table[table["instance_type"] == "Standard_ND96isr_H100_v5"].iloc[0]
    assert (
        _raw_line("azure_gpu_prices.csv", int(row["source"].split(":")[1]))["AcceleratorCount"]
        == "12"
    )
    assert row["gpu_count"] == 8


def test_spot_is_below_on_demand_except_the_documented_equal_rows() -> None:
    table = price_table()
    both = table.dropna(subset=["on_demand_usd_per_hour", "spot_usd_per_hour"])
    assert (both["spot_usd_per_hour"] <= both["on_demand_usd_per_hour"]).all()
    equal = both[both["spot_usd_per_hour"] == both["on_demand_usd_per_hour"]]
    assert set(zip(equal["cloud"], equal["instance_type"], strict=True)) <= SPOT_EQUALS_ON_DEMAND
    cheaper = both[both["spot_usd_per_hour"] < both["on_demand_usd_per_hour"]]
    assert len(cheaper) > 100


def _combinations() -> list[tuple[str, str, str, int, str]]:
    table = price_table()
    combos = set()
    for market in MARKETS:
        column = "on_demand_usd_per_hour" if market == "on-demand" else "spot_usd_per_hour"
        for _, row in table[table[column].notna()].iterrows():
            combos.add((row["cloud"], row["region"], row["gpu"], int(row["gpu_count"]), market))
    return sorted(combos)


def test_every_offering_in_the_table_can_be_quoted_in_its_own_region() -> None:
    table = price_table()
    combos = _combinations()
    assert {c[0] for c in combos} == {"aws", "gcp", "azure", "lambda", "runpod"}
    for cloud, region, gpu, count, market in combos:
        got = quote(gpu, count, cloud, region, market)
        assert isinstance(got, PriceQuote)
        assert (got.cloud, got.region, got.market, got.note) == (cloud, region, market, "")
        assert got.gpu_count >= count
        assert got.per_gpu_usd_per_hour == pytest.approx(got.usd_per_hour / got.gpu_count)
        column = "on_demand_usd_per_hour" if market == "on-demand" else "spot_usd_per_hour"
        rows = table[(table["source"] == got.source)]
        assert rows.iloc[0][column] == got.usd_per_hour  # traceable to one row


def test_quote_takes_the_lower_median_over_zones() -> None:
    # g5.xlarge spot in us-east-1: 0.4591 0.467 0.4886 0.4905 0.507 -> 0.4886 (use1-az4).
    got = quote("A10G", 1, "aws", "us-east-1", "spot")
    assert (got.instance_type, got.usd_per_hour, got.zone) == ("g5.xlarge", 0.4886, "use1-az4")
    assert quote("T4", 1, "aws", "eu-west-1", "on-demand").usd_per_hour == 0.587


def test_quote_picks_the_cheapest_instance_with_enough_gpus() -> None:
    got = quote("L4", 2, "aws", "us-east-1", "on-demand")
    assert (got.instance_type, got.gpu_count, got.usd_per_hour) == ("g6.12xlarge", 4, 4.6016)
    assert got.per_gpu_usd_per_hour == pytest.approx(1.1504)
    assert quote("A6000", 1, "lambda", "us-east-1", "on-demand").instance_type == "gpu_2x_a6000"


def test_family_names_match_every_variant_spec_names_one() -> None:
    assert quote("H100", 1, "azure", "eastus", "on-demand").gpu == "H100 NVL"
    sxm = quote("H100 SXM", 1, "azure", "eastus", "on-demand")
    assert (sxm.instance_type, sxm.gpu_count) == ("Standard_ND96isr_H100_v5", 8)
    assert quote("a100-80gb", 1, "Azure", "EastUS", "On-Demand").usd_per_hour == 3.673


def test_spot_is_cheaper_than_on_demand_in_quotes_where_the_market_discounts() -> None:
    for cloud, region, gpu, count in [
        ("aws", "us-east-1", "H100", 8),
        ("aws", "us-west-2", "L40S", 1),
        ("gcp", "us-central1", "A100-80GB", 1),
        ("azure", "eastus", "A10", 1),
    ]:
        spot = quote(gpu, count, cloud, region, "spot")
        on_demand = quote(gpu, count, cloud, region, "on-demand")
        assert spot.usd_per_hour < on_demand.usd_per_hour


def test_missing_region_falls_back_to_another_region_with_a_note() -> None:
    got = quote("H200", 8, "aws", "us-east-1", "spot")
    assert (got.region, got.instance_type, got.usd_per_hour) == (
        "us-west-2",
        "p5e.48xlarge",
        24.9358,
    )
    assert "us-east-1" in got.note and "us-west-2" in got.note


def _error(*args: object) -> str:
    with pytest.raises(CatalogError) as caught:
        quote(*args)  # type: ignore[arg-type]
    return str(caught.value)


def test_spot_on_lambda_is_an_error_that_points_at_on_demand() -> None:
    message = _error("V100", 1, "lambda", "us-east-1", "spot")
    for part in ("spot", "V100", "lambda", "us-east-1", "on-demand offers: V100 x8"):
        assert part in message


def test_unknown_gpu_names_what_was_asked_and_lists_what_exists() -> None:
    message = _error("B200", 1, "aws", "us-east-1", "on-demand")
    for part in ("B200", "aws", "us-east-1", "on-demand", "L4 x1/4", "H100 SXM x8"):
        assert part in message


def test_no_on_demand_price_lists_the_spot_offer() -> None:
    message = _error("H200", 8, "aws", "us-west-2", "on-demand")
    assert "no on-demand price for H200" in message and "spot offers: H200 SXM x8" in message


def test_too_many_gpus_says_the_most_there_is() -> None:
    assert "at most 4 x A10G" in _error("A10G", 8, "aws", "us-east-1", "spot")


def test_gcp_gpus_without_a_host_row_are_not_offered() -> None:
    message = _error("T4", 1, "gcp", "us-central1", "on-demand")
    assert "gcp has no T4" in message and "L4 x1/4" in message


@pytest.mark.parametrize(
    ("args", "parts"),
    [
        (("L4", 1, "aws", "us-east-9", "spot"), ("'us-east-9'", "eu-west-1, us-east-1, us-west-2")),
        (("L4", 1, "aws", "us-east-1", "reserved"), ("'reserved'", "on-demand, spot")),
        (("L4", 1, "oracle", "us-east-1", "spot"), ("'oracle'", "aws, azure, gcp, lambda, runpod")),
        (("L4", 0, "aws", "us-east-1", "spot"), ("at least 1",)),
    ],
)
def test_unknown_region_market_cloud_and_bad_count(
    args: tuple[object, ...], parts: tuple[str, ...]
) -> None:
    message = _error(*args)
    for part in parts:
        assert part in message
