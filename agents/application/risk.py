"""How much answer quality a change is expected to cost, as data.

Figures are *typical relative drops* of task accuracy reported for post-training
quantization of 7B-70B instruction models (recovery of ~99% for FP8 weights and
activations, ~98-99% for INT8 W8A8, ~95-98% for 4-bit weight-only GPTQ/AWQ, with the
weaker end on small models and reasoning-heavy tasks). They are priors, not
measurements of your deployment: the canary analysis of a rollout measures the real
drop. Changes that do not alter the model's numerics cost nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QualityRisk:
    """The expected relative quality drop of a change, and why."""

    expected_drop: float
    what: str


#: Weight quantization (vLLM's ``quantization`` argument) → typical relative drop.
WEIGHT_QUANTIZATION = {
    "fp8": QualityRisk(0.01, "FP8 weights and activations"),
    "int8": QualityRisk(0.02, "INT8 weights and activations (W8A8)"),
    "w8a8": QualityRisk(0.02, "INT8 weights and activations (W8A8)"),
    "int4": QualityRisk(0.05, "4-bit weights"),
    "awq": QualityRisk(0.05, "4-bit weights (AWQ)"),
    "gptq": QualityRisk(0.05, "4-bit weights (GPTQ)"),
}
#: An FP8 KV cache rounds attention keys and values: small, but not nothing.
FP8_KV_CACHE = QualityRisk(0.005, "an FP8 KV cache")


def quality_risk(change: dict[str, Any]) -> QualityRisk | None:
    """The quality risk of a proposal's change; None when it leaves the numerics alone."""
    args = change.get("engine_args") or {}
    risks = []
    quant = str(args.get("quantization") or "").lower()
    if quant and quant != "none":
        risks.append(WEIGHT_QUANTIZATION.get(quant, QualityRisk(0.05, f"{quant} weights")))
    if str(args.get("kv_cache_dtype") or "").lower().startswith("fp8"):
        risks.append(FP8_KV_CACHE)
    if not risks:
        return None
    return QualityRisk(
        expected_drop=sum(r.expected_drop for r in risks),
        what=" and ".join(r.what for r in risks),
    )
