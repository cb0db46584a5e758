"""The cost agent's bridge to the capacity model: a deployment's serving config and
workload from the context, and what one replica serves within the targets.

When a deployment has no SLO, the :data:`DEFAULT_TARGETS` apply and every figure says
so ("assumed"): a cheaper GPU is only proposed against a stated latency bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from agents.context import FleetContext, Targets
from optiinfra.errors import OptiInfraError

#: Used when no SLO is configured for a deployment: a chat-style p95 TTFT of 2 s and a
#: p95 inter-token latency of 150 ms (about 7 tokens/s, faster than people read).
DEFAULT_TARGETS = Targets(ttft_p95_s=2.0, itl_p95_s=0.15, sources=("assumed default",))

_QUANT_TO_WEIGHTS = {
    "none": "fp16",
    "": "fp16",
    "fp16": "fp16",
    "bf16": "bf16",
    "fp8": "fp8",
    "int8": "int8",
    "w8a8": "int8",
    "int4": "int4",
    "awq": "int4",
    "gptq": "int4",
}


def _int(args: dict[str, Any], name: str) -> int | None:
    value = args.get(name)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass
class ReplicaCapacityEstimator:
    """Capacity-model questions about the deployments of one context."""

    model: Any
    context: FleetContext

    def targets(self, deployment: dict[str, Any]) -> Targets:
        """Configured TTFT and inter-token targets; each one missing is the default's,
        named in ``assumed`` (an SLO with only an end-to-end target still gets both)."""
        configured = self.context.targets(deployment["tenant"], deployment["deployment"])
        values = {}
        assumed = []
        for name in ("ttft_p95_s", "itl_p95_s"):
            value = getattr(configured, name)
            if value is None:
                value = getattr(DEFAULT_TARGETS, name)
                assumed.append(name)
            values[name] = value
        sources = configured.sources + (("assumed default",) if assumed else ())
        return replace(configured, **values, sources=sources, assumed=tuple(assumed))

    def config(
        self,
        deployment: dict[str, Any],
        gpu: str | None = None,
        gpu_count: int | None = None,
        **overrides: Any,
    ) -> Any:
        from optiinfra.capacity import ServingConfig

        args = dict(deployment.get("engine_args") or {})
        args.update(overrides.pop("engine_args", {}) or {})
        tp = _int(args, "tensor_parallel_size") or 1
        pp = _int(args, "pipeline_parallel_size") or 1
        quant = str(args.get("quantization") or "none").lower()
        kv = str(args.get("kv_cache_dtype") or "auto").lower()
        values: dict[str, Any] = {
            "gpu": gpu or deployment["gpu"],
            "model": deployment["model"],
            "weight_dtype": _QUANT_TO_WEIGHTS.get(quant, "fp16"),
            "kv_cache_dtype": kv if kv in ("auto", "fp8", "fp16", "bf16") else "auto",
            "tensor_parallel": tp,
            "pipeline_parallel": pp,
            "max_num_seqs": _int(args, "max_num_seqs") or 256,
            "max_num_batched_tokens": _int(args, "max_num_batched_tokens"),
            "max_model_len": _int(args, "max_model_len"),
            "gpu_memory_utilization": float(args.get("gpu_memory_utilization") or 0.9),
            "enable_prefix_caching": bool(args.get("enable_prefix_caching", True)),
        }
        values.update(overrides)
        if gpu_count is not None:
            values["gpu_count"] = gpu_count
        return ServingConfig(**values)

    def workload(self, stats: dict[str, Any] | None) -> Any:
        from optiinfra.capacity import Workload

        if stats is None:
            return None
        prompt = float(stats.get("mean_prompt_tokens") or math.nan)
        output = float(stats.get("mean_output_tokens") or math.nan)
        if not (math.isfinite(prompt) and math.isfinite(output)) or prompt < 1 or output < 1:
            return None
        hit = float(stats.get("prefix_hit_ratio") or 0.0)
        hit = min(max(hit if math.isfinite(hit) else 0.0, 0.0), 1.0)
        return Workload(prompt_tokens=prompt, output_tokens=output, prefix_hit_ratio=hit)

    def rate_per_replica(self, deployment: dict[str, Any], stats: dict[str, Any] | None) -> float:
        """The observed rate over the replicas that serve it (running ones, when the
        inventory says which; a stopped replica serves nothing)."""
        serving = int(deployment.get("running") or 0) or int(deployment["replicas"] or 0)
        if stats is None or not serving:
            return math.nan
        return float(stats.get("request_rate") or math.nan) / serving

    def calibrated(self, deployment: dict[str, Any], stats: dict[str, Any] | None) -> Any:
        """The model corrected by this deployment's own measurements, when it has any
        (computed once per run and deployment: the context's memo)."""
        key = ("calibrated", id(self.model), deployment["tenant"], deployment["provider"],
               deployment["deployment"])  # fmt: skip
        if key not in self.context.memo:
            self.context.memo[key] = self._calibrate(deployment, stats)
        return self.context.memo[key]

    def _calibrate(self, deployment: dict[str, Any], stats: dict[str, Any] | None) -> Any:
        from optiinfra.capacity import Observation

        workload = self.workload(stats)
        if stats is None or workload is None:
            return self.model
        try:
            config = self.config(deployment)
        except OptiInfraError:
            return self.model
        rate = self.rate_per_replica(deployment, stats)
        fields: dict[str, Any] = {}
        tokens = float(stats.get("generation_tokens_per_s") or math.nan)
        running = float(stats.get("running_mean") or math.nan)
        replicas = max(1, int(deployment.get("running") or 0) or int(deployment["replicas"]))
        if math.isfinite(tokens) and math.isfinite(running) and running > 0 and tokens > 0:
            fields["generation_tokens_per_s"] = tokens / replicas
            fields["running_batch"] = running
        ttft = float(stats.get("ttft_p95_s") or math.nan)
        itl = float(stats.get("itl_p95_s") or math.nan)
        if math.isfinite(rate) and rate > 0 and (math.isfinite(ttft) or math.isfinite(itl)):
            fields["workload"] = workload
            fields["rate_rps"] = rate
            if math.isfinite(ttft) and ttft > 0:
                fields["ttft_p95_s"] = ttft
            if math.isfinite(itl) and itl > 0:
                fields["itl_p95_s"] = itl
        if not fields:
            return self.model
        try:
            return self.model.calibrate([Observation(config=config, **fields)])
        except OptiInfraError:
            return self.model

    def central_rate(
        self,
        deployment: dict[str, Any],
        stats: dict[str, Any] | None,
        config: Any,
        model: Any | None = None,
    ) -> float | None:
        """Requests/s one replica of ``config`` serves within the targets, central estimate
        only (a third of the capacity model's ``max_rate`` work; for comparing many
        candidates)."""
        workload = self.workload(stats)
        if workload is None:
            return None
        targets = self.targets(deployment)
        try:
            return float(
                (model or self.model).central_rate(
                    config, workload, ttft_p95_s=targets.ttft_p95_s, itl_p95_s=targets.itl_p95_s
                )
            )
        except OptiInfraError:
            return None

    def current_replica_rps_interval(
        self, deployment: dict[str, Any], stats: dict[str, Any] | None
    ) -> Any | None:
        """Requests/s one current replica serves within the targets, as the capacity
        model's estimate with its interval (``value``, ``low``, ``high``): what a
        schedule that must hold the SLO by itself every hour sizes on (the low end)."""
        workload = self.workload(stats)
        if workload is None:
            return None
        try:
            config = self.config(deployment)
        except OptiInfraError:
            return None
        targets = self.targets(deployment)
        model = self.calibrated(deployment, stats)
        try:
            return model.max_rate(
                config, workload, ttft_p95_s=targets.ttft_p95_s, itl_p95_s=targets.itl_p95_s
            )
        except OptiInfraError:
            return None

    def current_replica_rps(
        self, deployment: dict[str, Any], stats: dict[str, Any] | None
    ) -> float | None:
        """Requests/s one current replica serves within the targets (central estimate)."""
        try:
            config = self.config(deployment)
        except OptiInfraError:
            return None
        return self.central_rate(deployment, stats, config, self.calibrated(deployment, stats))
