"""TGI's ``/metrics``, as text-generation-inference's router serves it.

TGI has no captured ``/metrics`` in any public repository we could find; this follows the
router's source (``router/src/server.rs``, ``backends/v3/src/{backend,queue}.rs`` at
huggingface/text-generation-inference ``db931fc``) and its documented name list
(``docs/source/reference/metrics.md``). The router records through the Rust ``metrics``
crate and renders with ``metrics-exporter-prometheus`` 0.15.3, which shapes the text:

- counters first, then gauges, then histograms; a blank line after each family;
- no ``_total`` suffix and no ``_created`` series; counter and count values are integers;
- numbers in Rust's ``Display`` form (``3``, ``0.5``, ``0.00015000000000000001``);
- ``# HELP`` only for names the router describes, the first description winning
  (so ``tgi_request_duration`` reads "Request duration"); labels in the order given;
- a series appears only once it has been touched (``tgi_request_failure`` after a failure);
- histograms have buckets only where the router sets them: every ``*_duration`` gets 35
  geometric buckets from 0.00015 s (x1.5), ``tgi_request_input_length`` 100 steps of
  ``max_input_tokens/100``, ``tgi_request_generated_tokens`` and
  ``tgi_request_max_new_tokens`` 100 steps of ``max_total_tokens/100``,
  ``tgi_batch_next_size`` 1..1024; anything else is a summary (quantiles 0, 0.5, 0.9,
  0.95, 0.99, 0.999, 1).

TGI has no time-to-first-token metric and no prompt-token counter; scrapers derive them
from the queue and prefill durations and from ``tgi_request_input_length_sum``.

What the sandbox cannot measure:

- ``tgi_request_validation_duration`` is whatever part of ``e2e_seconds`` is not queue,
  prefill or decode time (0 when they add up).
- ``tgi_batch_decode_duration`` (detokenising) and ``tgi_batch_filter_duration`` are
  constants (``DETOKENIZE_SECONDS``, ``FILTER_SECONDS``); ``tgi_batch_inference_duration``
  is forward + both.
- Prefill batches are taken as one request each, observed when the request finishes:
  ``tgi_batch_inference_*{method="prefill"}``, ``tgi_batch_forward_duration{method=
  "prefill"}`` (its ``prefill_seconds``) and ``tgi_batch_next_size`` (1).
- ``tgi_request_skipped_tokens`` (speculation) records 0 for every generated token, its
  quantiles are 0 and its count is cumulative.
- An aborted request counts as ``tgi_request_failure{err="dropped"}`` (the client went away).
"""

from __future__ import annotations

from optiinfra.sandbox.exposition._text import Histogram, label_text, rust_float
from optiinfra.sandbox.observations import EngineState, FinishedRequest

CONTENT_TYPE = "text/plain; charset=utf-8"
DETOKENIZE_SECONDS = 0.0002
FILTER_SECONDS = 0.0001
SUMMARY_QUANTILES = (0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)
_METHODS = ("prefill", "decode")


def duration_buckets() -> tuple[float, ...]:
    """The router's 35 duration buckets, computed as it does (0.0001, then x1.5 each)."""
    out = []
    value = 0.0001
    for _ in range(35):
        value *= 1.5
        out.append(value)
    return tuple(out)


def linear_buckets(limit: int) -> tuple[float, ...]:
    """``(limit / 100) * (x + 1)`` for x in 0..100, as the router sizes token buckets."""
    return tuple((limit / 100.0) * (x + 1) for x in range(100))


#: First description the router registers for each name (metrics-exporter keeps the first).
HELP = {
    "tgi_request_success": "Number of successful requests",
    "tgi_request_duration": "Request duration",
    "tgi_request_validation_duration": "Request validation duration",
    "tgi_request_queue_duration": "Request queue duration",
    "tgi_request_inference_duration": "Request inference duration",
    "tgi_request_mean_time_per_token_duration": "Mean time per token per request",
    "tgi_request_generated_tokens": "Generated tokens per request",
    "tgi_batch_inference_count": "Inference calls per method (prefill or decode)",
    "tgi_request_count": "Total number of requests",
    "tgi_batch_inference_success": (
        "Number of successful inference calls per method (prefill or decode)"
    ),
    "tgi_batch_current_size": "Current batch size",
    "tgi_queue_size": "Current queue size",
    "tgi_batch_current_max_tokens": "Maximum tokens for the current batch",
    "tgi_request_max_new_tokens": "Maximum new tokens per request",
    "tgi_batch_inference_duration": "Batch inference duration",
    "tgi_batch_forward_duration": "Batch forward duration per method (prefill or decode)",
    "tgi_request_skipped_tokens": "Speculated tokens per request",
    "tgi_batch_filter_duration": (
        "Time spent filtering batches and sending generated tokens per method (prefill or decode)"
    ),
    "tgi_batch_decode_duration": "Time spent decoding a batch per method (prefill or decode)",
    "tgi_request_input_length": "Input token length per request",
    "tgi_batch_next_size": "Batch size of the next batch",
}

_REQUEST_DURATIONS = (
    "tgi_request_duration",
    "tgi_request_validation_duration",
    "tgi_request_queue_duration",
    "tgi_request_inference_duration",
    "tgi_request_mean_time_per_token_duration",
)
_BATCH_DURATIONS = (
    "tgi_batch_forward_duration",
    "tgi_batch_decode_duration",
    "tgi_batch_filter_duration",
    "tgi_batch_inference_duration",
)


class TgiMetricsBook:
    """The ``/metrics`` of one simulated TGI server (router + shards: one text).

    ``max_input_tokens`` and ``max_total_tokens`` size the token histograms exactly as
    the router does from its launch arguments.

    >>> book = TgiMetricsBook(model_name="m"); book.record_decode_step(0.03, 4)
    >>> 'tgi_batch_forward_duration_count{method="decode"} 1' in book.render()
    True
    """

    content_type = CONTENT_TYPE

    def __init__(
        self, *, model_name: str, max_input_tokens: int = 4095, max_total_tokens: int = 4096
    ) -> None:
        if not 0 < max_input_tokens < max_total_tokens:
            raise ValueError(
                "need 0 < max_input_tokens < max_total_tokens, got "
                f"{max_input_tokens} and {max_total_tokens}"
            )
        self.model_name = model_name  # TGI puts no model label on its metrics
        # Counters: a batch never fails in the sandbox, so inference_count == _success.
        self._batches = dict.fromkeys(_METHODS, 0)
        self._requests = 0
        self._successes = 0
        self._failures: dict[str, int] = {}
        self._gauges: dict[str, float] = {}
        durations = duration_buckets()
        self._hists: dict[tuple[str, tuple[tuple[str, str], ...]], Histogram] = {}
        for name in _REQUEST_DURATIONS:
            self._hists[(name, ())] = Histogram(durations)
        for name in _BATCH_DURATIONS:
            for method in _METHODS:
                self._hists[(name, (("method", method),))] = Histogram(durations)
        self._hists[("tgi_request_input_length", ())] = Histogram(linear_buckets(max_input_tokens))
        for name in ("tgi_request_generated_tokens", "tgi_request_max_new_tokens"):
            self._hists[(name, ())] = Histogram(linear_buckets(max_total_tokens))
        self._hists[("tgi_batch_next_size", ())] = Histogram(range(1, 1025))
        self._touched: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self._skipped_count = 0
        self._decode = {
            name: self._hists[(name, (("method", "decode"),))] for name in _BATCH_DURATIONS
        }

    # -- events (hot path) ------------------------------------------------------------

    def _observe(self, name: str, value: float, labels: tuple[tuple[str, str], ...] = ()) -> None:
        key = (name, labels)
        self._hists[key].observe(value)
        self._touched.add(key)

    def record_decode_step(self, step_seconds: float, sequences: int) -> None:
        """One decode batch: the backend's counters and batch histograms for ``decode``."""
        if sequences <= 0:
            return
        self._batches["decode"] += 1
        d = self._decode
        d["tgi_batch_forward_duration"].observe(step_seconds)
        d["tgi_batch_decode_duration"].observe(DETOKENIZE_SECONDS)
        d["tgi_batch_filter_duration"].observe(FILTER_SECONDS)
        d["tgi_batch_inference_duration"].observe(
            step_seconds + DETOKENIZE_SECONDS + FILTER_SECONDS
        )
        if not self._skipped_count:  # first decode batch: these series now exist
            self._touched.update((name, (("method", "decode"),)) for name in _BATCH_DURATIONS)
        self._skipped_count += sequences

    def record_prefill(self, tokens: int) -> None:
        """Prefill batches are recorded per finished request (see the module docstring)."""

    def record_prefix_cache(self, queried_tokens: int, hit_tokens: int) -> None:
        """TGI exposes nothing about its prefix cache."""

    def record_preemptions(self, count: int) -> None:
        """TGI's router has no preemption metric."""

    def record_finished(self, request: FinishedRequest) -> None:
        """Router and backend metrics of one finished request."""
        gen = request.generation_tokens
        inference = request.prefill_seconds + request.decode_seconds
        method = (("method", "prefill"),)
        self._requests += 1
        self._batches["prefill"] += 1
        self._observe("tgi_batch_forward_duration", request.prefill_seconds, method)
        self._observe("tgi_batch_decode_duration", DETOKENIZE_SECONDS, method)
        self._observe("tgi_batch_filter_duration", FILTER_SECONDS, method)
        self._observe(
            "tgi_batch_inference_duration",
            request.prefill_seconds + DETOKENIZE_SECONDS + FILTER_SECONDS,
            method,
        )
        self._observe("tgi_batch_next_size", 1)
        self._observe("tgi_request_input_length", request.prompt_tokens)
        self._observe("tgi_request_max_new_tokens", request.max_tokens)
        if request.finish_reason == "abort":
            self._failures["dropped"] = self._failures.get("dropped", 0) + 1
            return
        validation = max(request.e2e_seconds - request.queue_seconds - inference, 0.0)
        self._successes += 1
        self._observe("tgi_request_duration", request.e2e_seconds)
        self._observe("tgi_request_validation_duration", validation)
        self._observe("tgi_request_queue_duration", request.queue_seconds)
        self._observe("tgi_request_inference_duration", inference)
        self._observe("tgi_request_mean_time_per_token_duration", inference / max(gen, 1))
        self._observe("tgi_request_generated_tokens", gen)

    def set_state(self, state: EngineState) -> None:
        """Queue and batch gauges; the batch token budget is the KV cache in tokens."""
        budget = state.kv_cache_blocks * state.block_size
        self._gauges["tgi_queue_size"] = state.waiting
        self._gauges["tgi_batch_current_size"] = state.running
        self._gauges["tgi_batch_current_max_tokens"] = round(state.kv_cache_usage * budget)
        self._gauges["tgi_batch_max_total_tokens"] = budget

    # -- scrape ----------------------------------------------------------------------

    def render(self) -> str:
        out: list[str] = []

        def family(name: str, kind: str, lines: list[str]) -> None:
            if name in HELP:
                out.append(f"# HELP {name} {HELP[name]}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(lines)
            out.append("")

        batches = [f'{{method="{m}"}} {n}' for m, n in self._batches.items() if n]
        counters = {
            "tgi_batch_inference_count": batches,
            "tgi_batch_inference_success": batches,
            "tgi_request_count": [f" {self._requests}"] if self._requests else [],
            "tgi_request_failure": [f'{{err="{e}"}} {n}' for e, n in self._failures.items()],
            "tgi_request_success": [f" {self._successes}"] if self._successes else [],
        }
        for name, series in counters.items():
            if series:
                family(name, "counter", [name + s for s in series])
        for name, value in sorted(self._gauges.items()):
            family(name, "gauge", [f"{name} {rust_float(value)}"])
        for name in sorted({n for n, _ in self._touched}):
            lines = []
            for key in sorted(k for k in self._touched if k[0] == name):
                lines.extend(_histogram_lines(name, key[1], self._hists[key]))
            family(name, "histogram", lines)
        if self._skipped_count:
            name = "tgi_request_skipped_tokens"
            lines = [f'{name}{{quantile="{rust_float(q)}"}} 0' for q in SUMMARY_QUANTILES]
            lines += [f"{name}_sum 0", f"{name}_count {self._skipped_count}"]
            family(name, "summary", lines)
        return "\n".join(out) + "\n"


def _histogram_lines(name: str, labels: tuple[tuple[str, str], ...], hist: Histogram) -> list[str]:
    """metrics-exporter-prometheus's histogram: buckets, ``+Inf``, ``_sum``, ``_count``."""
    cum = hist.cumulative()
    lines = [
        f"{name}_bucket{label_text((*labels, ('le', rust_float(b))), sort=False)} {c}"
        for b, c in zip(hist.bounds, cum, strict=False)
    ]
    lines.append(f"{name}_bucket{label_text((*labels, ('le', '+Inf')), sort=False)} {cum[-1]}")
    lines.append(f"{name}_sum{label_text(labels, sort=False)} {rust_float(hist.sum)}")
    lines.append(f"{name}_count{label_text(labels, sort=False)} {hist.count}")
    return lines
