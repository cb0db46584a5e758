"""vLLM's ``/metrics`` (V1 engine), as vLLM 0.33.0 serves it.

Names, help texts, label names, children and bucket boundaries follow vLLM 0.33.0's
``vllm/v1/metrics/loggers.py`` (``PrometheusStatLogger``), ``buckets.py`` and ``perf.py``:
every family that logger registers unconditionally, in registration order. The text is
prometheus_client's ``generate_latest`` (text format 0.0.4, what ``curl`` gets): label
names sorted, counters as ``name_total`` plus a separate ``name_created`` gauge family,
histograms as buckets, ``_count``, ``_sum`` and a ``_created`` family.

Families registered only under options the sandbox never sets are left out, as a real
server would: speculative decoding, KV/EC connectors, LoRA, KV-cache residency
(``--kv-cache-metrics``), watermarking, ``VLLM_COMPUTE_NANS_IN_LOGITS``, the tool-parser
counter. So are the Python process/GC and ``http_*`` families that other collectors add
to the same registry: they describe the Python process, not the engine.

What the sandbox cannot measure, written as a real server with default flags would:

- ``vllm:estimated_*_per_gpu`` stay 0: vLLM fills them only with ``--enable-mfu-metrics``.
- ``vllm:external_prefix_cache_*``, ``vllm:mm_cache_*``, ``vllm:admission_rejections``,
  ``vllm:num_requests_waiting_by_reason{reason="deferred"}`` and the
  ``external_kv_transfer`` / non-``device`` sources stay 0: no KV connector, no
  multi-modal inputs, no queue limit, no deferrals in the sandbox.
- ``vllm:request_num_preemptions`` observes 0 per request and ``vllm:request_params_n`` 1
  (:class:`FinishedRequest` has neither); ``vllm:engine_sleep_state`` is always awake.
- ``vllm:cache_config_info`` carries every ``CacheConfig`` field of 0.33.0 as a label;
  fields the sandbox does not model hold vLLM's defaults.

Timing differs from vLLM in one way: vLLM observes TTFT and counts the first generated
token when that token appears; the sandbox learns them when the request finishes
(:meth:`record_decode_step` covers tokens 2..n only), so they lag by one request lifetime.
"""

from __future__ import annotations

import time

from optiinfra.sandbox.exposition._text import (
    Histogram,
    HistogramLines,
    client_counter,
    client_family,
    client_gauge,
    go_float,
    label_text,
)
from optiinfra.sandbox.observations import EngineState, FinishedRequest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: vLLM 0.33.0 ``vllm/v1/metrics/buckets.py`` defaults.
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
                           40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0,
                           7680.0)  # fmt: skip
TIME_TO_FIRST_TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                               0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0,
                               640.0, 2560.0)  # fmt: skip
INTER_TOKEN_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
                               1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
ITERATION_TOKENS_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
REQUEST_PARAMS_N_BUCKETS = (1, 2, 5, 10, 20)
REQUEST_NUM_PREEMPTIONS_BUCKETS = (1, 2, 3, 4, 5, 10, 20)

FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")
_PROMPT_SOURCES = ("local_compute", "local_cache_hit", "external_kv_transfer")
_CACHE_HIT_SOURCES = ("device", "host", "p2p", "disk", "external_unspecified")


def request_tokens_buckets(max_model_len: int) -> tuple[int, ...]:
    """vLLM's ``build_1_2_5_buckets(max_model_len)``: 1, 2, 5, 10, 20, 50, ... <= the limit."""
    out: list[int] = []
    scale = 1
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * scale > max_model_len:
                return tuple(out)
            out.append(mantissa * scale)
        scale *= 10


# name, help, bucket family (None: request_tokens, sized by max_model_len)
_HISTOGRAMS: tuple[tuple[str, str, tuple[float, ...] | None], ...] = (
    ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", None),
    ("vllm:request_generation_tokens", "Number of generation tokens processed.", None),
    ("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.",
     ITERATION_TOKENS_BUCKETS),
    ("vllm:request_max_num_generation_tokens",
     "Histogram of maximum number of requested generation tokens.", None),
    ("vllm:request_params_n", "Histogram of the n request parameter.", REQUEST_PARAMS_N_BUCKETS),
    ("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", None),
    ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
     TIME_TO_FIRST_TOKEN_BUCKETS),
    ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
     INTER_TOKEN_LATENCY_BUCKETS),
    ("vllm:request_time_per_output_token_seconds",
     "Histogram of time_per_output_token_seconds per request.", INTER_TOKEN_LATENCY_BUCKETS),
    ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
     REQUEST_LATENCY_BUCKETS),
    ("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.",
     REQUEST_LATENCY_BUCKETS),
    ("vllm:request_inference_time_seconds",
     "Histogram of time spent in RUNNING phase for request.", REQUEST_LATENCY_BUCKETS),
    ("vllm:request_prefill_time_seconds",
     "Histogram of time spent in PREFILL phase for request.", REQUEST_LATENCY_BUCKETS),
    ("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.",
     REQUEST_LATENCY_BUCKETS),
    ("vllm:request_num_preemptions",
     "Histogram of the number of times a request was preempted.",
     REQUEST_NUM_PREEMPTIONS_BUCKETS),
    ("vllm:request_prefill_kv_computed_tokens",
     "Histogram of new KV tokens computed during prefill (excluding cached tokens).", None),
)  # fmt: skip

_MFU_COUNTERS = (
    ("flops", "floating point operations"),
    ("read_bytes", "bytes read from memory"),
    ("write_bytes", "bytes written to memory"),
)
_ADMISSION = ("max_num_queued_reqs", "max_num_queued_tokens")
_ADMISSION_HELP = "Number of admission attempts rejected by a queue limit, by reason."
_RUNNING_HELP = "Number of requests in model execution batches."
_WAITING_HELP = "Number of requests waiting to be processed."
_KV_USAGE_HELP = "KV-cache usage. 1 means 100 percent usage."
_QUERIES_HELP = "Prefix cache queries, in terms of number of queried tokens."
_HITS_HELP = "Prefix cache hits, in terms of number of cached tokens."
_MM_HELP = "Multi-modal cache {}, in terms of number of {} items."
_PREEMPTIONS_HELP = "Cumulative number of preemption from the engine."
_CACHED_HELP = "Number of cached prompt tokens (local + external)."
_GENERATION_HELP = "Number of generation tokens processed."
_WAITING_BY_REASON_HELP = (
    "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for "
    "scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV "
    "transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting."
)
_SLEEP_HELP = (
    "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is "
    "awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2."
)
_EXTERNAL_HELP = (
    "External prefix cache {} from KV connector cross-instance cache sharing, in terms of "
    "number of {} tokens."
)
_CACHED_BY_SOURCE_HELP = (
    "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host "
    "(offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or "
    "external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + "
    "vllm:external_prefix_cache_hits."
)


class VllmMetricsBook:
    """The ``/metrics`` of one simulated vLLM server (one engine core; ``engine_index``
    is its ``engine`` label, 0 unless data-parallel).

    ``max_model_len`` sizes the token-count histograms exactly as vLLM does; the other
    options only fill ``vllm:cache_config_info``. ``created`` fixes the ``*_created``
    timestamps (default: construction time, like a real server's start).

    >>> book = VllmMetricsBook(model_name="m", max_model_len=2048)
    >>> "vllm:generation_tokens_total" in book.render()
    True
    """

    content_type = CONTENT_TYPE

    def __init__(
        self,
        *,
        model_name: str,
        engine_index: int = 0,
        max_model_len: int = 8192,
        enable_prefix_caching: bool = True,
        kv_cache_dtype: str = "auto",
        created: float | None = None,
    ) -> None:
        if max_model_len < 1:
            raise ValueError(f"max_model_len must be positive, got {max_model_len}")
        self.model_name = model_name
        self.max_model_len = max_model_len
        self._labels = {"model_name": model_name, "engine": str(engine_index)}
        self._enable_prefix_caching = enable_prefix_caching
        self._kv_cache_dtype = kv_cache_dtype
        self._created = time.time() if created is None else created
        self._state = EngineState(running=0, waiting=0, kv_cache_usage=0.0, kv_cache_blocks=0)
        # Counters (plain numbers: the hot path only adds).
        self._prompt_tokens = 0
        self._prompt_computed = 0
        self._prompt_cached = 0
        self._generation_tokens = 0
        self._preemptions = 0
        self._prefix_queries = 0
        self._prefix_hits = 0
        self._success = dict.fromkeys(FINISH_REASONS, 0)
        token_buckets = request_tokens_buckets(max_model_len)
        self._hists = {
            name: Histogram(token_buckets if bounds is None else bounds)
            for name, _, bounds in _HISTOGRAMS
        }
        self._hist_lines = [
            (name, doc, HistogramLines(name, self._labels, self._hists[name]))
            for name, doc, _ in _HISTOGRAMS
        ]
        h = self._hists
        self._itl = h["vllm:inter_token_latency_seconds"]
        self._iteration = h["vllm:iteration_tokens_total"]

    # -- events (hot path) ------------------------------------------------------------

    def record_decode_step(self, step_seconds: float, sequences: int) -> None:
        """One decode step: ``sequences`` tokens, each an inter-token-latency observation."""
        if sequences > 0:
            self._generation_tokens += sequences
            self._itl.observe(step_seconds, sequences)
            self._iteration.observe(sequences)

    def record_prefill(self, tokens: int) -> None:
        """Prompt tokens computed in one engine step (an ``iteration_tokens`` observation)."""
        if tokens > 0:
            self._prompt_tokens += tokens
            self._prompt_computed += tokens
            self._iteration.observe(tokens)

    def record_prefix_cache(self, queried_tokens: int, hit_tokens: int) -> None:
        """Prefix-cache lookup; hit tokens also count as (cached) prompt tokens, as in vLLM."""
        self._prefix_queries += queried_tokens
        self._prefix_hits += hit_tokens
        self._prompt_tokens += hit_tokens
        self._prompt_cached += hit_tokens

    def record_preemptions(self, count: int) -> None:
        self._preemptions += count

    def record_finished(self, request: FinishedRequest) -> None:
        """Outcome counter and every per-request histogram, as vLLM's logger does."""
        h = self._hists
        gen = request.generation_tokens
        self._success[request.finish_reason] += 1
        if gen > 0:
            self._generation_tokens += 1  # the first token, produced by the prefill
        h["vllm:time_to_first_token_seconds"].observe(request.ttft_seconds)
        h["vllm:e2e_request_latency_seconds"].observe(request.e2e_seconds)
        h["vllm:request_queue_time_seconds"].observe(request.queue_seconds)
        h["vllm:request_prefill_time_seconds"].observe(request.prefill_seconds)
        h["vllm:request_inference_time_seconds"].observe(
            request.prefill_seconds + request.decode_seconds
        )
        h["vllm:request_decode_time_seconds"].observe(request.decode_seconds)
        h["vllm:request_num_preemptions"].observe(0)
        h["vllm:request_prefill_kv_computed_tokens"].observe(
            request.prompt_tokens - max(request.cached_prompt_tokens, 0)
        )
        h["vllm:request_prompt_tokens"].observe(request.prompt_tokens)
        h["vllm:request_generation_tokens"].observe(gen)
        h["vllm:request_time_per_output_token_seconds"].observe(
            request.decode_seconds / (gen - 1) if gen > 1 else 0
        )
        h["vllm:request_max_num_generation_tokens"].observe(gen)
        h["vllm:request_params_n"].observe(1)
        if request.max_tokens:
            h["vllm:request_params_max_tokens"].observe(request.max_tokens)

    def set_state(self, state: EngineState) -> None:
        self._state = state

    # -- scrape ----------------------------------------------------------------------

    def render(self) -> str:
        lab = self._labels
        created = self._created
        st = self._state
        out: list[str] = []

        def counter(name: str, doc: str, value: float) -> None:
            client_counter(out, name, doc, [(lab, value)], created)

        def by(key: str, values: dict[str, float]) -> list[tuple[dict[str, str], float]]:
            return [({**lab, key: k}, v) for k, v in values.items()]

        for short, what in _MFU_COUNTERS:
            counter(
                f"vllm:estimated_{short}_per_gpu",
                f"Estimated number of {what} per GPU (for Model Flops Utilization calculations).",
                0,
            )
        client_gauge(out, "vllm:num_requests_running", _RUNNING_HELP, [(lab, st.running)])
        client_gauge(out, "vllm:num_requests_waiting", _WAITING_HELP, [(lab, st.waiting)])
        client_gauge(
            out,
            "vllm:num_requests_waiting_by_reason",
            _WAITING_BY_REASON_HELP,
            by("reason", {"capacity": st.waiting, "deferred": 0}),
        )
        client_gauge(
            out,
            "vllm:engine_sleep_state",
            _SLEEP_HELP,
            by("sleep_state", {"awake": 1, "weights_offloaded": 0, "discard_all": 0}),
        )
        client_gauge(out, "vllm:kv_cache_usage_perc", _KV_USAGE_HELP, [(lab, st.kv_cache_usage)])
        counter("vllm:prefix_cache_queries", _QUERIES_HELP, self._prefix_queries)
        counter("vllm:prefix_cache_hits", _HITS_HELP, self._prefix_hits)
        counter(
            "vllm:external_prefix_cache_queries", _EXTERNAL_HELP.format("queries", "queried"), 0
        )
        counter("vllm:external_prefix_cache_hits", _EXTERNAL_HELP.format("hits", "cached"), 0)
        counter("vllm:mm_cache_queries", _MM_HELP.format("queries", "queried"), 0)
        counter("vllm:mm_cache_hits", _MM_HELP.format("hits", "cached"), 0)
        counter("vllm:num_preemptions", _PREEMPTIONS_HELP, self._preemptions)
        counter("vllm:prompt_tokens", "Number of prefill tokens processed.", self._prompt_tokens)
        sources = (self._prompt_computed, self._prompt_cached, 0)
        client_counter(
            out,
            "vllm:prompt_tokens_by_source",
            "Number of prompt tokens by source.",
            by("source", dict(zip(_PROMPT_SOURCES, sources, strict=True))),
            created,
        )
        counter("vllm:prompt_tokens_cached", _CACHED_HELP, self._prompt_cached)
        tiers = {t: (self._prefix_hits if t == "device" else 0) for t in _CACHE_HIT_SOURCES}
        client_counter(
            out,
            "vllm:prompt_tokens_cached_by_source",
            _CACHED_BY_SOURCE_HELP,
            by("source", tiers),
            created,
        )
        counter("vllm:generation_tokens", _GENERATION_HELP, self._generation_tokens)
        client_counter(
            out,
            "vllm:request_success",
            "Count of successfully processed requests.",
            by("finished_reason", self._success),
            created,
        )
        rejections = [({"model_name": self.model_name, "reason": r}, 0) for r in _ADMISSION]
        client_counter(out, "vllm:admission_rejections", _ADMISSION_HELP, rejections, created)
        created_text = go_float(created)
        for name, doc, lines in self._hist_lines:
            client_family(out, name, doc, "histogram", lines.live())
            client_family(
                out,
                f"{name}_created",
                doc,
                "gauge",
                [f"{name}_created{label_text(lab, sort=True)} {created_text}"],
            )
        client_gauge(
            out,
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            [(self._cache_config_labels(), 1)],
        )
        return "\n".join(out) + "\n"

    def _cache_config_labels(self) -> dict[str, str]:
        """``CacheConfig.metrics_info()`` of vLLM 0.33.0 plus ``engine``: every field, str()."""
        st = self._state
        tokens = st.kv_cache_blocks * st.block_size
        return {
            "_block_size_resolved": "True",
            "block_size": str(st.block_size),
            "user_specified_block_size": "False",
            "kv_cache_layout": "LBNHC",
            "prefix_match_unit": "None",
            "gpu_memory_utilization": str(st.gpu_memory_utilization),
            "cache_dtype": self._kv_cache_dtype,
            "is_attention_free": "False",
            "num_gpu_blocks_override": "None",
            "sliding_window": "None",
            "enable_prefix_caching": str(self._enable_prefix_caching),
            "prefix_caching_hash_algo": "sha256",
            "prefix_cache_retention_interval": "0",
            "kv_cache_dtype_skip_layers": "[]",
            "mamba_page_size_padded": "None",
            "skip_page_size_padded": "None",
            "mamba_block_size": "None",
            "mamba_cache_dtype": "auto",
            "mamba_ssm_cache_dtype": "auto",
            "mamba_cache_mode": "none",
            "enable_mamba_shared_prefix_checkpoint": "False",
            "replayssm_buffer_len": "16",
            "use_replayssm": "False",
            "use_kda_recoverssm": "False",
            "num_gpu_blocks": str(st.kv_cache_blocks),
            "num_cpu_blocks": "None",
            "simple_cpu_offload_num_blocks": "None",
            "effective_attention_block_size": str(st.block_size),
            "kv_cache_size_tokens": str(tokens),
            "kv_cache_max_concurrency": str(round(tokens / self.max_model_len, 2)),
            "hash_block_size": str(st.block_size),
            "cache_hit_alignment_tokens": str(st.block_size),
            "kv_sharing_fast_prefill": "False",
            "swa_bounded_replay": "True",
            "kv_cache_memory_bytes": "None",
            "kv_offloading_size": "None",
            "kv_offloading_backend": "native",
            "engine": self._labels["engine"],
        }
