"""Cloud GPU prices: one normalised table over four public catalog subsets, and quotes.

The data files are verbatim copies of SkyPilot catalog subsets (``data/SOURCES.md``).
Each cloud writes its table differently, so :func:`price_table` brings them onto one
shape, one row per offering (an instance type in one zone, or in one region where the
cloud has no zones in its table):

``cloud, region, zone, instance_type, accelerator, gpu, gpu_count, vcpus, memory_gib,
on_demand_usd_per_hour, spot_usd_per_hour, source``

- ``accelerator`` is the catalog's own GPU name; ``gpu`` is the name in
  :func:`optiinfra.catalog.gpu_specs` where the catalog says enough to pick the variant
  (``A100-80GB`` is SXM on AWS p4de and GCP a2-ultragpu but PCIe on Azure NC A100 v4
  and RunPod; Azure's NC H100 v5 is an H100 NVL). GPUs the spec table lacks keep the
  catalog's name (``V100`` here is the 16 GB part on every cloud, ``A6000``).
- Prices are the catalog's figures, never rounded or corrected; an empty price is NaN
  (no such offering: AWS p5e has no on-demand price, Lambda has no spot market).
- GCP prices an A2/A3/G2 host VM and its GPUs on separate rows; an offering here is a
  host row plus the GPU row of the same zone for the GPUs that machine type carries
  (``a2-highgpu-1g`` = host + 1 x A100), summed exactly. GPU rows with no host machine
  type in the table (A100 x2, T4, V100, ...) are not offerings and do not appear.
- One value is corrected, with its reason in ``_GPU_COUNT_FIXES``: the catalog gives
  Azure's Standard_ND96isr_H100_v5 12 GPUs; that size has 8.

Example::

    >>> q = quote("L4", 1, "aws", "us-east-1", "on-demand")
    >>> (q.instance_type, q.usd_per_hour)
    ('g6.xlarge', 0.8048)
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import cache
from importlib import resources

import pandas as pd

from optiinfra.catalog._tables import CatalogError, normalise_key, number
from optiinfra.catalog.gpus import gpu_spec

MARKETS = ("on-demand", "spot")
COLUMNS = (
    "cloud",
    "region",
    "zone",
    "instance_type",
    "accelerator",
    "gpu",
    "gpu_count",
    "vcpus",
    "memory_gib",
    "on_demand_usd_per_hour",
    "spot_usd_per_hour",
    "source",
)
_PRICE_COLUMN = {"on-demand": "on_demand_usd_per_hour", "spot": "spot_usd_per_hour"}

_AWS = "aws_gpu_prices.csv"
_GCP = "gcp_gpu_prices.csv"
_AZURE = "azure_gpu_prices.csv"
_GPU_CLOUDS = "skypilot_catalog_v8_lambda_runpod_subset.csv"

# Catalog accelerator names -> gpu_specs() names, where the name alone settles the variant.
_GPU_NAMES = {
    "T4": "T4",
    "A10": "A10",
    "A10G": "A10G",
    "L4": "L4",
    "L40S": "L40S",
    "A100": "A100 40GB SXM",
    "A100-80GB": "A100 80GB SXM",
    "H100": "H100 SXM",
    "H200": "H200 SXM",
}
# Where the accelerator name hides the variant, the cloud's instance type settles it
# (Azure NC A100 v4 = A100 80GB PCIe, NC H100 v5 = H100 NVL; RunPod names its SXM part
# "A100-80GB-SXM", so its "A100-80GB" is the PCIe card).
_GPU_BY_INSTANCE = {
    ("azure", "Standard_NC24ads_A100_v4"): "A100 80GB PCIe",
    ("azure", "Standard_NC48ads_A100_v4"): "A100 80GB PCIe",
    ("azure", "Standard_NC96ads_A100_v4"): "A100 80GB PCIe",
    ("azure", "Standard_NC40ads_H100_v5"): "H100 NVL",
}
_GPU_BY_CLOUD = {("runpod", "A100-80GB"): "A100 80GB PCIe"}
# The only corrected catalog value: ND H100 v5 is an 8-GPU size (the catalog says 12).
_GPU_COUNT_FIXES = {("azure", "Standard_ND96isr_H100_v5"): 8}
# GCP machine types in the table -> the GPUs attached to them (GCP's machine-type docs).
_GCP_HOSTS = {
    "a2-highgpu-1g": ("A100", 1),
    "a2-ultragpu-1g": ("A100-80GB", 1),
    "a3-highgpu-8g": ("H100", 8),
    "g2-standard-4": ("L4", 1),
    "g2-standard-48": ("L4", 4),
}


@dataclass(frozen=True)
class PriceQuote:
    """The price of the cheapest offering that gives at least the GPUs asked for.

    ``usd_per_hour`` is for the whole instance (``gpu_count`` may exceed what was asked);
    ``zone`` is where that price was read (None where the table has no zones); ``note``
    says when the quote comes from another region than the one asked for.
    """

    instance_type: str
    cloud: str
    region: str
    market: str
    usd_per_hour: float
    gpu: str
    gpu_count: int
    per_gpu_usd_per_hour: float
    source: str
    zone: str | None = None
    note: str = ""


def price_table() -> pd.DataFrame:
    """Every offering of every cloud, one row each (a copy: callers may modify it)."""
    return _table().copy()


@cache
def quote(gpu: str, gpu_count: int, cloud: str, region: str, market: str) -> PriceQuote:
    """The cheapest ``market`` offering with at least ``gpu_count`` x ``gpu`` in a region.

    Cached: the tables never change while a process runs, and a quote costs ~10 ms.

    ``gpu`` may be a spec name (``"H100 NVL"``: that variant only) or a family name as
    clouds write it (``"H100"``, ``"A100-80GB"``: any variant). Over the zones of a
    region the price is the lower median (``statistics.median_low``): on-demand prices
    are the same in every zone, but spot prices vary and the cheapest zone is often an
    outlier (p5.48xlarge spot in us-east-1 ranges 14.25-55.04) that a fleet spread over
    zones for capacity would not pay everywhere; the lower median is still a price that
    one zone's row states, so a quote can always be traced to one row.

    When the region lacks the offering, the cheapest other region of the same cloud is
    quoted with a ``note``; when the cloud has none at all, or the region, cloud or
    market is unknown, a :class:`CatalogError` says what was asked and what exists.
    """
    market_name = _market(market)
    table = _table()
    cloud_key = cloud.strip().lower()
    clouds = sorted(table["cloud"].unique())
    if cloud_key not in clouds:
        raise CatalogError(f"unknown cloud {cloud!r}; clouds with prices: {', '.join(clouds)}")
    in_cloud = table[table["cloud"] == cloud_key]
    regions = sorted(in_cloud["region"].unique())
    region_name = next((r for r in regions if r.lower() == region.strip().lower()), None)
    if region_name is None:
        raise CatalogError(
            f"unknown region {region!r} for {cloud_key}; regions in its price table: "
            f"{', '.join(regions)}"
        )
    if gpu_count < 1:
        raise CatalogError(f"gpu_count must be at least 1, got {gpu_count}")
    column = _PRICE_COLUMN[market_name]
    wanted = (
        _gpu_mask(in_cloud, gpu) & (in_cloud["gpu_count"] >= gpu_count) & in_cloud[column].notna()
    )
    offers = in_cloud[wanted]
    here = offers[offers["region"] == region_name]
    if not here.empty:
        return _cheapest(here, market_name)
    if not offers.empty:
        best = _cheapest(offers, market_name)
        note = (
            f"{cloud_key} has no {market_name} offering of {gpu} x{gpu_count} in "
            f"{region_name}; quoted {best.region}, its cheapest region for it"
        )
        return replace(best, note=note)
    raise CatalogError(_nothing_message(in_cloud, gpu, gpu_count, cloud_key, region, market_name))


def _market(market: str) -> str:
    key = normalise_key(market)
    for name in MARKETS:
        if key == normalise_key(name):
            return name
    raise CatalogError(f"unknown market {market!r}; markets: {', '.join(MARKETS)}")


def _gpu_mask(frame: pd.DataFrame, gpu: str) -> pd.Series:
    """Rows for a GPU name: a spec name picks its variant, a family name every variant."""
    key = normalise_key(gpu)
    table = _table()
    if (table["gpu"].map(normalise_key) == key).any():
        return frame["gpu"].map(normalise_key) == key
    mask = frame["accelerator"].map(normalise_key) == key
    try:
        canonical = gpu_spec(gpu).name
    except CatalogError:
        return mask
    return mask | (frame["gpu"] == canonical)


def _cheapest(frame: pd.DataFrame, market: str) -> PriceQuote:
    column = _PRICE_COLUMN[market]
    best: tuple[tuple[float, int, str, str], PriceQuote] | None = None
    for (region, instance_type), rows in frame.groupby(["region", "instance_type"]):
        rows = rows.sort_values("zone", na_position="first")
        price = statistics.median_low(rows[column].tolist())
        row = rows[rows[column] == price].iloc[0]
        count = int(row["gpu_count"])
        zone = row["zone"] if isinstance(row["zone"], str) else None
        found = PriceQuote(
            instance_type=str(instance_type),
            cloud=str(row["cloud"]),
            region=str(region),
            market=market,
            usd_per_hour=float(price),
            gpu=str(row["gpu"]),
            gpu_count=count,
            per_gpu_usd_per_hour=float(price) / count,
            source=str(row["source"]),
            zone=zone,
        )
        rank = (float(price), count, str(region), str(instance_type))
        if best is None or rank < best[0]:
            best = (rank, found)
    assert best is not None, "caller passes a non-empty frame"
    return best[1]


def _nothing_message(
    in_cloud: pd.DataFrame, gpu: str, gpu_count: int, cloud: str, region: str, market: str
) -> str:
    column = _PRICE_COLUMN[market]
    asked = f"no {market} offering of {gpu} x{gpu_count} on {cloud} (asked for {region})"
    same_gpu = in_cloud[_gpu_mask(in_cloud, gpu)]
    if same_gpu.empty:
        reason = f"{cloud} has no {gpu} in its price table"
    elif same_gpu[column].isna().all():
        other = MARKETS[1 - MARKETS.index(market)]
        reason = (
            f"{cloud} has no {market} price for {gpu}; {other} offers: "
            f"{_summary(same_gpu[same_gpu[_PRICE_COLUMN[other]].notna()])}"
        )
    else:
        reason = f"at most {int(same_gpu['gpu_count'].max())} x {gpu} per instance on {cloud}"
    offers = in_cloud[in_cloud[column].notna()]
    listing = _summary(offers) if not offers.empty else "nothing"
    return f"{asked}: {reason}. {cloud} {market} offers: {listing}"


def _summary(frame: pd.DataFrame) -> str:
    """'A10G x1/4 (eu-west-1, us-east-1); ...' for an error message."""
    parts = []
    for gpu, rows in frame.groupby("gpu"):
        counts = "/".join(str(c) for c in sorted(rows["gpu_count"].unique()))
        regions = ", ".join(sorted(rows["region"].unique()))
        parts.append(f"{gpu} x{counts} ({regions})")
    return "; ".join(parts)


@cache
def _table() -> pd.DataFrame:
    rows = [*_aws(), *_gcp(), *_azure(), *_gpu_clouds()]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype({"gpu_count": "int64"})


def _offering(
    cloud: str, row: dict[str, str], filename: str, line: int, zone: str | None
) -> dict[str, object]:
    """A normalised row from a catalog row with SkyPilot's usual column names."""
    instance_type = row["InstanceType"]
    accelerator = row["AcceleratorName"]
    count = number(filename, line, row, "AcceleratorCount")
    if count is None:
        raise CatalogError(f"{filename}:{line}: AcceleratorCount: required value is empty")
    return {
        "cloud": cloud,
        "region": row["Region"],
        "zone": zone or None,
        "instance_type": instance_type,
        "accelerator": accelerator,
        "gpu": _gpu_name(cloud, instance_type, accelerator),
        "gpu_count": _GPU_COUNT_FIXES.get((cloud, instance_type), int(count)),
        "vcpus": _float(number(filename, line, row, "vCPUs")),
        "memory_gib": _float(number(filename, line, row, "MemoryGiB")),
        "on_demand_usd_per_hour": _float(number(filename, line, row, "Price")),
        "spot_usd_per_hour": _float(number(filename, line, row, "SpotPrice")),
        "source": f"{filename}:{line}",
    }


def _gpu_name(cloud: str, instance_type: str, accelerator: str) -> str:
    return (
        _GPU_BY_INSTANCE.get((cloud, instance_type))
        or _GPU_BY_CLOUD.get((cloud, accelerator))
        or _GPU_NAMES.get(accelerator, accelerator)
    )


def _float(value: float | None) -> float:
    return math.nan if value is None else value


def _aws() -> list[dict[str, object]]:
    return [_offering("aws", row, _AWS, line, row["AvailabilityZone"]) for line, row in _read(_AWS)]


def _azure() -> list[dict[str, object]]:
    return [_offering("azure", row, _AZURE, line, None) for line, row in _read(_AZURE)]


def _gpu_clouds() -> list[dict[str, object]]:
    return [
        _offering(row["provider"], row, _GPU_CLOUDS, line, row["AvailabilityZone"])
        for line, row in _read(_GPU_CLOUDS)
    ]


def _gcp() -> list[dict[str, object]]:
    """Host rows joined with the GPU rows of their zone; prices summed exactly."""
    rows = _read(_GCP)
    gpus = {
        (row["AvailabilityZone"], row["AcceleratorName"], row["AcceleratorCount"]): (line, row)
        for line, row in rows
        if not row["InstanceType"]
    }
    offerings = []
    for line, host in rows:
        if not host["InstanceType"]:
            continue
        carried = _GCP_HOSTS.get(host["InstanceType"])
        if carried is None:
            raise CatalogError(
                f"{_GCP}:{line}: InstanceType: no GPU is known for GCP machine type "
                f"{host['InstanceType']!r}; known: {', '.join(sorted(_GCP_HOSTS))}"
            )
        accelerator, count = carried
        match = gpus.get((host["AvailabilityZone"], accelerator, str(count)))
        if match is None:
            continue  # no price for its GPUs in this zone: not an offering
        gpu_line, gpu_row = match
        offering = _offering(
            "gcp",
            {**host, "AcceleratorName": accelerator, "AcceleratorCount": str(count)},
            _GCP,
            line,
            host["AvailabilityZone"],
        )
        for market, column in (
            ("Price", "on_demand_usd_per_hour"),
            ("SpotPrice", "spot_usd_per_hour"),
        ):
            number(_GCP, gpu_line, gpu_row, market)  # a clear error if it is not a number
            if host[market] and gpu_row[market]:
                offering[column] = float(Decimal(host[market]) + Decimal(gpu_row[market]))
            else:
                offering[column] = math.nan
        offering["source"] = f"{_GCP}:{line}+{gpu_line}"
        offerings.append(offering)
    return offerings


def _read(filename: str) -> list[tuple[int, dict[str, str]]]:
    """``(line_number, row)`` for each data row; lines starting with ``#`` are comments."""
    ref = resources.files("optiinfra.catalog").joinpath("data", filename)
    try:
        text = ref.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CatalogError(f"catalog table {filename} is missing from the package") from exc
    numbered = [
        (number_, line)
        for number_, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    records = list(csv.reader(line for _, line in numbered))
    if not records:
        raise CatalogError(f"catalog table {filename} is empty")
    header = records[0]
    out = []
    for (line, _), fields in zip(numbered[1:], records[1:], strict=True):
        if len(fields) != len(header):
            raise CatalogError(
                f"{filename}:{line}: expected {len(header)} fields, found {len(fields)}"
            )
        out.append((line, {k: v.strip() for k, v in zip(header, fields, strict=True)}))
    return out
