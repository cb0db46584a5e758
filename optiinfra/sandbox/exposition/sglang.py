"""SGLang's ``/metrics`` (``--enable-metrics``), as SGLang 0.5.23 serves it.

Names, help texts, label names and bucket boundaries follow SGLang 0.5.23's
``sglang/srt/observability/metrics_collector.py`` (``SchedulerMetricsCollector``,
``TokenizerMetricsCollector``) with its default server arguments. SGLang always serves
``/metrics`` through prometheus_client's multiprocess collector, so the text has that
collector's shape: no ``_created`` series, histograms written ``_sum``, buckets,
``_count``, and a series appears only once its process has touched it (no tokenizer
series before the first request).

Two label sets, because two kinds of process write the metrics:

- scheduler gauges (one scheduler per rank): ``model_name``, ``engine_type``, ``tp_rank``,
  ``pp_rank``, ``moe_ep_rank`` and, with data parallelism, ``dp_rank``. Only attention-TP
  rank 0 of each pipeline stage reports unless ``enable_metrics_for_all_schedulers``, so
  a TP=4, PP=2 server writes two series (``pp_rank`` 0 and 1), each with the same values
  here; queries should take one stage, not the sum.
- tokenizer counters and histograms (one process): ``model_name``, ``engine_type`` and,
  on the per-request ones, ``is_streaming``.

This is the core of SGLang's set, not all of it: 0.5.23 also writes ~30 scheduler gauges
for speculative decoding, PD disaggregation queues, hybrid SWA/Mamba pools, CUDA-graph
and utilisation bookkeeping, which the sandbox does not model and leaves out.

What the sandbox cannot measure:

- ``is_streaming`` is one constant per server (``streaming`` option, default ``false``).
- ``sglang:gen_throughput`` is computed as SGLang does, every ``decode_log_interval`` (40)
  decode steps, but over the simulated step durations rather than wall time.
- ``sglang:cache_hit_rate`` is the hit ratio of the latest prefix-cache lookup (SGLang:
  of the latest prefill batch); ``sglang:num_grammar_queue_reqs`` is always 0.
- ``sglang:cached_tokens_total`` uses ``cache_source="device"`` only (no host/storage tier).
"""

from __future__ import annotations

from optiinfra.sandbox.exposition._text import (
    Histogram,
    HistogramLines,
    client_counter,
    client_family,
    client_gauge,
)
from optiinfra.sandbox.observations import EngineState, FinishedRequest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: SGLang 0.5.23 defaults (``TokenizerMetricsCollector`` / ``SchedulerMetricsCollector``).
TIME_TO_FIRST_TOKEN_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80,
                               100, 200, 400)  # fmt: skip
E2E_REQUEST_LATENCY_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80,
                               100, 200, 400, 600, 1200, 1800, 2400)  # fmt: skip
INTER_TOKEN_LATENCY_BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030,
                               0.035, 0.040, 0.060, 0.080, 0.100, 0.200, 0.400, 0.600, 0.800,
                               1.000, 2.000, 4.000, 6.000, 8.000)  # fmt: skip
PROMPT_TOKENS_BUCKETS = (100, 300, 500, 700, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 7000,
                         8000, 9000, 10000, 12500, 15000, 17500, 20000, 22500, 25000, 27500,
                         30000, 35000, 40000, 60000, 80000, 100000, 200000, 300000, 400000,
                         600000, 800000, 1000000, 1100000)  # fmt: skip
QUEUE_TIME_BUCKETS = (0.0, 0.001, 0.005, 0.010, 0.050, 0.100, 0.200, 0.500, 1, 2, 3, 4, 5,
                      10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200, 300, 400, 500, 600,
                      700, 800, 900, 1000, 1200, 1400, 1600, 1800, 2000, 2500,
                      3000)  # fmt: skip
DECODE_LOG_INTERVAL = 40

_STREAM = "is_streaming"
_PROMPT_HELP = "Number of prefill tokens processed."
_GENERATION_HELP = "Number of generation tokens processed."
_THROUGHPUT_HELP = "The generation throughput (token/s)."
_QUEUE_HELP = "The number of requests in the waiting queue."
_GRAMMAR_QUEUE_HELP = "The number of requests in the grammar waiting queue."
_KV_AVAILABLE_HELP = "Number of free token slots in the KV cache pool."
_KV_USED_HELP = "Number of actively used token slots in the KV cache pool."
_MAX_TOKENS_HELP = "Maximum total number of tokens in the KV cache pool."
_RETRACTED_HELP = "Total number of retracted requests."
_QUEUE_TIME_HELP = "Histogram of queueing time in seconds."
_ABORTED_HELP = "Number of requests aborted."
_CACHED_HELP = "Number of cached prompt tokens by source (device/host/storage)."
# name, help, bounds, per-request (has is_streaming)
_REQUEST_HISTOGRAMS = (
    ("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
     TIME_TO_FIRST_TOKEN_BUCKETS, True),
    ("sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds",
     E2E_REQUEST_LATENCY_BUCKETS, True),
    ("sglang:request_time_per_output_token_seconds",
     "Per-request TPOT in seconds: (finished_time - first_token_time) / (completion_tokens - 1).",
     INTER_TOKEN_LATENCY_BUCKETS, True),
    ("sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
     INTER_TOKEN_LATENCY_BUCKETS, False),
    ("sglang:prompt_tokens_histogram", "Histogram of prompt token length.",
     PROMPT_TOKENS_BUCKETS, False),
    ("sglang:uncached_prompt_tokens_histogram",
     "Histogram of uncached (compute) prompt token length.", PROMPT_TOKENS_BUCKETS, False),
    ("sglang:generation_tokens_histogram", "Histogram of generation token length.",
     PROMPT_TOKENS_BUCKETS, False),
)  # fmt: skip


class SglangMetricsBook:
    """The ``/metrics`` of one simulated SGLang server (one tokenizer, one scheduler per
    reporting rank).

    >>> book = SglangMetricsBook(model_name="m", pipeline_parallel_size=2)
    >>> book.render().count('sglang:num_running_reqs{')
    2
    """

    content_type = CONTENT_TYPE

    def __init__(
        self,
        *,
        model_name: str,
        tensor_parallel_size: int = 1,
        pipeline_parallel_size: int = 1,
        dp_rank: int | None = None,
        enable_metrics_for_all_schedulers: bool = False,
        engine_type: str = "unified",
        streaming: bool = False,
        context_len: int = 8192,
        page_size: int = 1,
    ) -> None:
        if tensor_parallel_size < 1 or pipeline_parallel_size < 1:
            raise ValueError("tensor_parallel_size and pipeline_parallel_size must be >= 1")
        self.model_name = model_name
        self._context_len = context_len
        self._page_size = page_size
        tok = {"model_name": model_name, "engine_type": engine_type}
        self._tok = tok
        self._tok_stream = {**tok, _STREAM: "true" if streaming else "false"}
        tp_ranks = range(tensor_parallel_size) if enable_metrics_for_all_schedulers else [0]
        self._ranks: list[dict[str, str]] = []
        for pp in range(pipeline_parallel_size):
            for tp in tp_ranks:
                labels = {**tok, "tp_rank": str(tp), "pp_rank": str(pp), "moe_ep_rank": "0"}
                if dp_rank is not None:
                    labels["dp_rank"] = str(dp_rank)
                self._ranks.append(labels)
        self._state = EngineState(running=0, waiting=0, kv_cache_usage=0.0, kv_cache_blocks=0)
        # Tokenizer-process counters.
        self._prompt_tokens = 0
        self._generation_tokens = 0
        self._requests = 0
        self._aborted = 0
        self._cached_tokens = 0
        self._retracted = 0
        # Scheduler-process windows.
        self._hit_rate = 0.0
        self._gen_throughput = 0.0
        self._window_tokens = 0
        self._window_seconds = 0.0
        self._window_steps = 0
        self._hists: dict[str, Histogram] = {}
        self._hist_lines: list[tuple[str, str, HistogramLines]] = []
        for name, doc, bounds, per_request in _REQUEST_HISTOGRAMS:
            hist = self._hists[name] = Histogram(bounds)
            labels = self._tok_stream if per_request else tok
            self._hist_lines.append((name, doc, HistogramLines(name, labels, hist)))
        self._queue_hist = Histogram(QUEUE_TIME_BUCKETS)
        self._queue_lines = [
            HistogramLines("sglang:queue_time_seconds", r, self._queue_hist) for r in self._ranks
        ]
        self._itl = self._hists["sglang:inter_token_latency_seconds"]

    # -- events (hot path) ------------------------------------------------------------

    def record_decode_step(self, step_seconds: float, sequences: int) -> None:
        """ITL observations (SGLang adds ``n`` to one bucket and the interval to the sum)
        and the ``gen_throughput`` window."""
        if sequences <= 0:
            return
        self._itl.observe(step_seconds, sequences)
        self._window_tokens += sequences
        self._window_seconds += step_seconds
        self._window_steps += 1
        if self._window_steps >= DECODE_LOG_INTERVAL:
            if self._window_seconds > 0:
                self._gen_throughput = self._window_tokens / self._window_seconds
            self._window_tokens = 0
            self._window_seconds = 0.0
            self._window_steps = 0

    def record_prefill(self, tokens: int) -> None:
        """SGLang counts prompt tokens per finished request, not per prefill batch."""

    def record_prefix_cache(self, queried_tokens: int, hit_tokens: int) -> None:
        if queried_tokens > 0:
            self._hit_rate = hit_tokens / queried_tokens

    def record_preemptions(self, count: int) -> None:
        """Preempted requests are "retracted" in SGLang."""
        self._retracted += count

    def record_finished(self, request: FinishedRequest) -> None:
        """What the tokenizer manager observes when a request finishes (and the
        scheduler's queue-time observation)."""
        h = self._hists
        gen = request.generation_tokens
        self._requests += 1
        self._prompt_tokens += request.prompt_tokens
        self._generation_tokens += gen
        self._cached_tokens += request.cached_prompt_tokens
        if request.finish_reason == "abort":
            self._aborted += 1
        h["sglang:time_to_first_token_seconds"].observe(request.ttft_seconds)
        h["sglang:e2e_request_latency_seconds"].observe(request.e2e_seconds)
        if gen > 1:
            h["sglang:request_time_per_output_token_seconds"].observe(
                request.decode_seconds / (gen - 1)
            )
        h["sglang:prompt_tokens_histogram"].observe(request.prompt_tokens)
        h["sglang:uncached_prompt_tokens_histogram"].observe(
            request.prompt_tokens - request.cached_prompt_tokens
        )
        h["sglang:generation_tokens_histogram"].observe(gen)
        self._queue_hist.observe(request.queue_seconds)

    def set_state(self, state: EngineState) -> None:
        self._state = state

    # -- scrape ----------------------------------------------------------------------

    def render(self) -> str:
        st = self._state
        total = st.kv_cache_blocks * st.block_size
        used = round(st.kv_cache_usage * total)
        out: list[str] = []

        def scheduler(name: str, doc: str, value: float) -> None:
            client_gauge(out, name, doc, [(r, value) for r in self._ranks])

        def tokenizer(name: str, doc: str, labels: dict[str, str], value: float) -> None:
            # multiprocess mode: a series exists once its process has incremented it
            if value or self._requests:
                client_counter(out, name, doc, [(labels, value)], None)

        def histograms(*names: str) -> None:
            for name, doc, lines in self._hist_lines:
                if name in names and lines.hist.count:
                    client_family(out, name, doc, "histogram", lines.multiprocess())

        stream = self._tok_stream
        tokenizer("sglang:prompt_tokens", _PROMPT_HELP, stream, self._prompt_tokens)
        tokenizer("sglang:generation_tokens", _GENERATION_HELP, stream, self._generation_tokens)
        scheduler("sglang:token_usage", "The token usage.", st.kv_cache_usage)
        scheduler("sglang:cache_hit_rate", "The prefix cache hit rate.", self._hit_rate)
        histograms(
            "sglang:time_to_first_token_seconds",
            "sglang:e2e_request_latency_seconds",
            "sglang:request_time_per_output_token_seconds",
            "sglang:inter_token_latency_seconds",
        )
        scheduler("sglang:num_running_reqs", "The number of running requests.", st.running)
        scheduler("sglang:num_used_tokens", "The number of used tokens.", used)
        scheduler("sglang:gen_throughput", _THROUGHPUT_HELP, self._gen_throughput)
        scheduler("sglang:num_queue_reqs", _QUEUE_HELP, st.waiting)
        scheduler("sglang:num_grammar_queue_reqs", _GRAMMAR_QUEUE_HELP, 0)
        scheduler("sglang:kv_available_tokens", _KV_AVAILABLE_HELP, total - used)
        scheduler("sglang:kv_used_tokens", _KV_USED_HELP, used)
        scheduler("sglang:max_total_num_tokens", _MAX_TOKENS_HELP, total)
        scheduler("sglang:page_size", "KV cache page size in tokens.", self._page_size)
        scheduler("sglang:context_len", "Maximum context length.", self._context_len)
        if self._retracted:
            series = [(r, float(self._retracted)) for r in self._ranks]
            client_counter(out, "sglang:num_retracted_requests", _RETRACTED_HELP, series, None)
        if self._queue_hist.count:
            lines = [x for q in self._queue_lines for x in q.multiprocess()]
            client_family(out, "sglang:queue_time_seconds", _QUEUE_TIME_HELP, "histogram", lines)
        tokenizer("sglang:num_requests", "Number of requests processed.", stream, self._requests)
        if self._aborted:
            tokenizer("sglang:num_aborted_requests", _ABORTED_HELP, self._tok, self._aborted)
        if self._cached_tokens:
            cached = {**self._tok, "cache_source": "device"}
            tokenizer("sglang:cached_tokens", _CACHED_HELP, cached, self._cached_tokens)
        histograms(
            "sglang:prompt_tokens_histogram",
            "sglang:uncached_prompt_tokens_histogram",
            "sglang:generation_tokens_histogram",
        )
        return "\n".join(out) + "\n"
