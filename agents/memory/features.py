"""What a decision looked like when it was made, and the vector that compares decisions.

:class:`DecisionFeatures` is the context of one proposal: the kind of change, where it
runs (cloud, GPU, model size), how loaded and how full the deployment was, and how much
cheaper the change was expected to make it. :func:`decision_vector` turns it into a
fixed-length vector whose cosine similarity to another decision's vector says how alike
the two decisions are (``docs/learning.md`` explains each component and its weight).

Why blocks of fixed length: every field becomes a block whose length (its weight) is
the same whatever the value, so the cosine of two vectors is exactly the weighted mean
of per-field similarities, ``Σ wᵢ² sᵢ / Σ wᵢ²``, where ``sᵢ`` is 1 for equal categories
and 0 for different ones, and ``cos(π/2 · |Δt|)`` for numbers scaled to ``t ∈ [0, 1]``.
The kind of change weighs more than the whole context (13 against 11), so a decision of
another kind is at most 11/24 ≈ 0.46 similar and one of the same kind at least 13/24 ≈
0.54: the same-kind similarity is ``0.54 + 0.46 × (context similarity)``.

Example::

    features = features_for(proposal, context)
    vector = decision_vector(features)          # 64 floats, kind block first
    similarity(features, other_features)        # 0.0 … 1.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.common.proposals import HOURS_PER_MONTH, Proposal
from agents.context import FleetContext
from agents.context.fleet import normal_market
from optiinfra.store.memory import DECISION_VECTOR_SIZE

#: Bumped whenever the meaning or layout of the vector changes; stored with each memory.
FEATURES_VERSION = 1

#: Kinds of change (``optiinfra.config.schema.ChangeKind``) plus ``other``.
KINDS = (
    "spot_migration",
    "right_size",
    "reserved_capacity",
    "idle_shutdown",
    "engine_tuning",
    "quantization",
    "parallelism",
    "autoscaling",
    "consolidation",
    "other",
)

#: Clouds, grouped by how they bill and interrupt: hyperscalers apart, the GPU clouds
#: (per-hour GPU rental, no spot market of the same kind) together, own hardware together.
CLOUDS = ("aws", "gcp", "azure", "gpu_cloud", "own_hardware", "sandbox", "other")
_GPU_CLOUDS = {
    "lambda",
    "runpod",
    "vultr",
    "coreweave",
    "paperspace",
    "digitalocean",
    "linode",
    "hetzner",
    "ovhcloud",
    "ovh",
}
_OWN_HARDWARE = {"kubernetes", "k8s", "onprem", "on-prem", "docker", "local"}

#: GPU classes by memory per GPU, which decides what fits (model, KV cache, batch):
#: ≤ 24 GiB (T4, A10, A10G, L4), ≤ 48 GiB (V100 32 GB, A100 40 GB, L40S), ≤ 96 GiB (A100
#: 80 GB, H100), larger (H200, B200); ``none`` for CPU-only, ``unknown`` off the table.
GPU_CLASSES = ("gpu_24g", "gpu_48g", "gpu_96g", "gpu_large", "none", "unknown")

#: The market a change moves replicas to (``none``: the change does not pick one).
TARGET_MARKETS = ("none", "on-demand", "spot", "reserved")

#: Squared weight of each block: its share of the similarity. The kind (13) outweighs
#: the whole context (11): another kind scores at most 11/24 ≈ 0.46, the same kind at
#: least 13/24 ≈ 0.54. Where a decision runs (cloud, GPU class, model size) weighs more
#: than any one measured figure: they decide interruption rates, what fits, and how a
#: model takes quantization.
WEIGHTS: dict[str, float] = {
    "kind": 13.0,
    "cloud": 1.5,
    "gpu_class": 1.5,
    "target_market": 1.0,
    "market_mix": 0.5,
    "params_b": 1.5,
    "gpu_count": 0.5,
    "replicas": 0.5,
    "load": 1.0,
    "batch_occupancy": 0.5,
    "gpu_util": 0.5,
    "kv_usage": 0.5,
    "price_gap": 1.0,
    "quantization_step": 0.5,
}

#: Numeric blocks in vector order (each three values, see :func:`_number_block`).
NUMERIC_BLOCKS = (
    "params_b",
    "gpu_count",
    "replicas",
    "load",
    "batch_occupancy",
    "gpu_util",
    "kv_usage",
    "price_gap",
    "quantization_step",
)

#: Values actually used; the rest of the 64 are zero, reserved for later features
#: (a new feature in them keeps the collection; a different length would need a new one).
USED_DIMENSIONS = (
    len(KINDS) + len(CLOUDS) + len(GPU_CLASSES) + len(TARGET_MARKETS) + 4 + 3 * len(NUMERIC_BLOCKS)
)
VECTOR_SIZE = DECISION_VECTOR_SIZE

#: Weight bits of an engine ``quantization`` setting (vLLM names; none = 16-bit).
_QUANT_BITS = {
    "": 16,
    "none": 16,
    "fp16": 16,
    "bf16": 16,
    "fp8": 8,
    "int8": 8,
    "w8a8": 8,
    "int4": 4,
    "awq": 4,
    "gptq": 4,
    "w4a16": 4,
}

#: Default ``max_num_seqs`` of vLLM, for batch occupancy when it is not configured.
_DEFAULT_MAX_NUM_SEQS = 256


class DecisionFeatures(BaseModel):
    """The context of one decision. ``None`` means unknown (it matches only unknown).

    Built by :func:`features_for` when a proposal is made, carried in the proposal's
    ``evidence["decision_features"]``, and stored with the outcome, so the rollout can
    remember the decision exactly as it looked when it was proposed.
    """

    model_config = ConfigDict(extra="ignore")

    version: int = FEATURES_VERSION
    kind: str = Field(min_length=1, description="The ChangeKind of the proposal.")
    tenant: str = "default"
    provider: str = Field(default="", description="Configured provider name.")
    cloud: str = Field(default="", description="Cloud label or provider kind (aws, gcp …).")
    target: str = ""
    gpu: str = ""
    gpu_count: int | None = Field(default=None, ge=0, description="GPUs per replica.")
    replicas: int | None = Field(default=None, ge=0)
    model: str = ""
    params_b: float | None = Field(default=None, gt=0, description="Model size, billions.")
    load_rps_per_replica: float | None = Field(default=None, ge=0)
    batch_occupancy: float | None = Field(
        default=None, ge=0, le=1, description="Mean running requests / max_num_seqs."
    )
    gpu_util: float | None = Field(default=None, ge=0, le=1)
    kv_usage: float | None = Field(default=None, ge=0, le=1)
    price_gap: float | None = Field(
        default=None,
        ge=-1,
        le=1,
        description="Expected relative cost change of the target (-0.3 = 30% cheaper).",
    )
    on_demand_share: float | None = Field(default=None, ge=0, le=1)
    spot_share: float | None = Field(default=None, ge=0, le=1)
    reserved_share: float | None = Field(default=None, ge=0, le=1)
    target_market: str | None = Field(default=None, description="Market the change moves to.")
    quantization_step: float | None = Field(
        default=None, ge=0, le=1, description="Share of weight bits the change removes."
    )
    #: Kept beside the vector (not in it): what the decision promised, so a realised
    #: saving can be read as a share of the expected one.
    expected_saving_usd_per_month: float | None = None


# ------------------------------------------------------------------ from a proposal


def features_for(proposal: Proposal, context: FleetContext) -> DecisionFeatures:
    """The features of ``proposal`` in the fleet as ``context`` saw it.

    The deployment row and its window statistics give the context; a proposal whose
    target is not a deployment (a commitment for a cloud/region/GPU) falls back to what
    its change and evidence say.
    """
    row, stats = _rows(context).get(
        (proposal.tenant, proposal.provider or "", proposal.target), (None, None)
    )
    evidence = proposal.evidence
    change = proposal.change
    gpu = str((row or {}).get("gpu") or evidence.get("gpu") or change.get("gpu") or "")
    gpu_count = _int((row or {}).get("gpu_count"), evidence.get("gpu_count"))
    replicas = _int((row or {}).get("replicas"), evidence.get("replicas"))
    model = str((row or {}).get("model") or evidence.get("model") or "")
    cloud = context.cloud_of(row) if row is not None else str(evidence.get("cloud") or "")
    if not cloud and proposal.provider:
        cloud = context.provider_kinds.get(proposal.provider, "")
    engine_args = dict((row or {}).get("engine_args") or {})
    stats = stats or {}
    serving = _int((row or {}).get("running")) or replicas
    rate = _finite(stats.get("request_rate"))
    load = rate / serving if rate is not None and serving else None
    running = _finite(stats.get("running_mean"))
    max_seqs = _int(engine_args.get("max_num_seqs")) or _DEFAULT_MAX_NUM_SEQS
    shares = _market_shares(row)
    deltas = proposal.expected_deltas
    saving = proposal.monthly_saving_usd() if "cost_usd_per_month" in deltas else None
    return DecisionFeatures(
        kind=proposal.kind,
        tenant=proposal.tenant,
        provider=proposal.provider or "",
        cloud=cloud,
        target=proposal.target,
        gpu=gpu,
        gpu_count=gpu_count,
        replicas=replicas,
        model=model,
        params_b=_params_b(model),
        load_rps_per_replica=load,
        batch_occupancy=_unit(running / max_seqs) if running is not None else None,
        gpu_util=_unit(_finite(stats.get("gpu_util_mean"))),
        kv_usage=_unit(_finite(stats.get("kv_usage_mean"))),
        price_gap=_price_gap(proposal, row),
        on_demand_share=shares[0],
        spot_share=shares[1],
        reserved_share=shares[2],
        target_market=_target_market(proposal),
        quantization_step=_quantization_step(change, engine_args),
        expected_saving_usd_per_month=saving,
    )


def _rows(context: FleetContext) -> dict[tuple[str, str, str], tuple[dict[str, Any], Any]]:
    """(tenant, provider, deployment) → (row, stats), built once per context."""
    key = "agents.memory.rows"
    if key not in context.memo:
        context.memo[key] = {
            (str(r["tenant"]), str(r["provider"]), str(r["deployment"])): (r, s)
            for r, s in context.deployment_rows()
        }
    return context.memo[key]  # type: ignore[no-any-return]


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(*values: Any) -> int | None:
    for value in values:
        number = _finite(value)
        if number is not None and number >= 0:
            return int(number)
    return None


def _unit(value: float | None) -> float | None:
    return None if value is None else min(1.0, max(0.0, value))


def _params_b(model: str) -> float | None:
    if not model:
        return None
    from optiinfra.catalog import CatalogError
    from optiinfra.catalog.llms import model_spec

    try:
        return float(model_spec(model).params_b)
    except CatalogError:
        return None


def _market_shares(row: Mapping[str, Any] | None) -> tuple[float | None, ...]:
    if row is None:
        return (None, None, None)
    counts = [_finite(row.get(k)) or 0.0 for k in ("on_demand", "spot", "reserved")]
    total = sum(counts)
    if total <= 0:
        return (None, None, None)
    return tuple(c / total for c in counts)


def _price_gap(proposal: Proposal, row: Mapping[str, Any] | None) -> float | None:
    """Expected cost change relative to what the target costs now, in [-1, 1]."""
    deltas = proposal.expected_deltas
    if "cost_usd_per_hour" in deltas:
        change = deltas["cost_usd_per_hour"].value
    elif "cost_usd_per_month" in deltas:
        change = deltas["cost_usd_per_month"].value / HOURS_PER_MONTH
    else:
        return 0.0  # the change does not touch cost: known to be no gap
    now = _finite((row or {}).get("usd_per_hour"))
    if now is None or now <= 0:
        return None
    return max(-1.0, min(1.0, change / now))


def _target_market(proposal: Proposal) -> str | None:
    if proposal.kind == "reserved_capacity":
        return "reserved"
    market = proposal.change.get("market")
    return normal_market(market) if market else None


def _quantization_step(change: Mapping[str, Any], engine_args: Mapping[str, Any]) -> float:
    """Share of the weight bits the change removes (16 → 8 bits: 0.5); 0 if none."""
    wanted = (change.get("engine_args") or {}).get("quantization")
    if wanted is None:
        return 0.0
    now = _QUANT_BITS.get(str(engine_args.get("quantization") or "none").lower(), 16)
    after = _QUANT_BITS.get(str(wanted).lower(), now)
    return max(0.0, min(1.0, (now - after) / 16))


# ------------------------------------------------------------------ the vector


def cloud_class(cloud: str) -> str:
    """The cloud block a cloud label or provider kind falls in."""
    name = cloud.strip().lower()
    if name in ("aws", "gcp", "azure", "sandbox"):
        return name
    if name in ("google", "gce", "gke"):
        return "gcp"
    if name in _GPU_CLOUDS:
        return "gpu_cloud"
    if name in _OWN_HARDWARE:
        return "own_hardware"
    return "other"


def gpu_class(gpu: str, gpu_count: int | None = None) -> str:
    """The GPU class of a GPU name, by memory per GPU (see :data:`GPU_CLASSES`)."""
    if gpu_count == 0 or gpu.strip().lower() in ("", "none", "cpu"):
        return "none" if gpu_count == 0 or gpu.strip() else "unknown"
    from optiinfra.catalog import CatalogError
    from optiinfra.catalog.gpus import gpu_spec

    try:
        memory = gpu_spec(gpu).memory_gib
    except CatalogError:
        return "unknown"
    if memory <= 24:
        return "gpu_24g"
    if memory <= 48:
        return "gpu_48g"
    if memory <= 96:
        return "gpu_96g"
    return "gpu_large"


def scaled(features: DecisionFeatures) -> dict[str, float | None]:
    """Every numeric field on [0, 1] (None = unknown), as the vector encodes it.

    Sizes and rates span orders of magnitude, so they are log-scaled over a documented
    range; shares and the price gap are bounded already and kept linear.
    """
    f = features
    return {
        # 0.5 B … 1,000 B parameters
        "params_b": _log_range(f.params_b, 0.5, 1000.0),
        # 1 … 16 GPUs per replica
        "gpu_count": _log_range(f.gpu_count, 1, 16) if f.gpu_count else None,
        # 1 … 256 replicas
        "replicas": _log_range(max(f.replicas, 1), 1, 256) if f.replicas is not None else None,
        # 0 … 1,000 requests/s per replica, log(1 + rps / 0.1): 1 rps ≈ 0.26, 10 ≈ 0.5
        "load": (
            min(1.0, math.log10(1 + f.load_rps_per_replica / 0.1) / 4)
            if f.load_rps_per_replica is not None
            else None
        ),
        "batch_occupancy": f.batch_occupancy,
        "gpu_util": f.gpu_util,
        "kv_usage": f.kv_usage,
        # -1 (free) … +1 (twice the cost)
        "price_gap": (f.price_gap + 1) / 2 if f.price_gap is not None else None,
        "quantization_step": f.quantization_step,
    }


def _log_range(value: float | None, low: float, high: float) -> float | None:
    if value is None or value <= 0:
        return None
    t = (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return min(1.0, max(0.0, t))


def _one_hot(value: str, names: tuple[str, ...], weight: float) -> list[float]:
    return [weight if name == value else 0.0 for name in names]


def _number_block(t: float | None, weight: float) -> list[float]:
    """A number on a quarter circle: the dot product of two is ``cos(π/2 · |t₁ - t₂|)``.

    A plain scalar would not do: in a cosine, 0.2 and 0.8 both just point "up".
    Unknown is its own direction, so it matches unknown and nothing else.
    """
    if t is None:
        return [0.0, 0.0, weight]
    angle = math.pi / 2 * t
    return [weight * math.cos(angle), weight * math.sin(angle), 0.0]


def _market_block(features: DecisionFeatures, weight: float) -> list[float]:
    shares = (features.on_demand_share, features.spot_share, features.reserved_share)
    if any(s is None for s in shares):
        return [0.0, 0.0, 0.0, weight]
    norm = math.sqrt(sum(s * s for s in shares))  # type: ignore[operator]
    if norm == 0:
        return [0.0, 0.0, 0.0, weight]
    return [weight * s / norm for s in shares] + [0.0]  # type: ignore[operator]


def decision_vector(features: DecisionFeatures) -> list[float]:
    """The 64-value vector of a decision (layout in ``docs/learning.md``).

    Blocks, in order: kind (10), cloud (7), GPU class (6), target market (4), market mix
    now (4), then nine numbers of three values each; the last six values are zero.
    Its length is ``sqrt(24)`` whatever the features, so cosine similarity is the
    weighted mean of the per-field similarities.
    """
    w = {name: math.sqrt(weight) for name, weight in WEIGHTS.items()}
    kind = features.kind if features.kind in KINDS else "other"
    market = features.target_market if features.target_market in TARGET_MARKETS else "none"
    vector = [
        *_one_hot(kind, KINDS, w["kind"]),
        *_one_hot(cloud_class(features.cloud), CLOUDS, w["cloud"]),
        *_one_hot(gpu_class(features.gpu, features.gpu_count), GPU_CLASSES, w["gpu_class"]),
        *_one_hot(market or "none", TARGET_MARKETS, w["target_market"]),
        *_market_block(features, w["market_mix"]),
    ]
    numbers = scaled(features)
    for name in NUMERIC_BLOCKS:
        vector += _number_block(numbers[name], w[name])
    assert len(vector) == USED_DIMENSIONS
    return vector + [0.0] * (VECTOR_SIZE - len(vector))


def similarity(a: DecisionFeatures, b: DecisionFeatures) -> float:
    """Cosine similarity of two decisions' vectors (what the memory's search scores)."""
    va, vb = decision_vector(a), decision_vector(b)
    dot = sum(x * y for x, y in zip(va, vb, strict=True))
    return dot / math.sqrt(sum(x * x for x in va) * sum(y * y for y in vb))
