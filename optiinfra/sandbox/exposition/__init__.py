"""The ``/metrics`` text of each engine the sandbox imitates, and of DCGM exporter.

One module per real format (:mod:`.vllm`, :mod:`.sglang`, :mod:`.tgi`, :mod:`.dcgm`), each
written from that project's own source at a named version, so that a collector pointed
at a sandbox server parses exactly what it would parse from the real one. Books record
events cheaply (plain numbers, one bisect per histogram observation) and format text only
when scraped.

Example::

    book = metrics_book("vllm", model_name="meta-llama/Llama-3.1-8B-Instruct",
                        max_model_len=8192)
    book.record_decode_step(0.021, sequences=48)
    text = book.render()          # served with book.content_type
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from optiinfra.errors import OptiInfraError
from optiinfra.sandbox.exposition.dcgm import DcgmGpuBook
from optiinfra.sandbox.exposition.sglang import SglangMetricsBook
from optiinfra.sandbox.exposition.tgi import TgiMetricsBook
from optiinfra.sandbox.exposition.vllm import VllmMetricsBook
from optiinfra.sandbox.observations import GpuBook, MetricsBook

__all__ = [
    "BOOKS",
    "DcgmGpuBook",
    "ExpositionError",
    "SglangMetricsBook",
    "TgiMetricsBook",
    "VllmMetricsBook",
    "gpu_book",
    "metrics_book",
]

#: Engine name (as in the fleet YAML's ``engine``) -> the book that writes its /metrics.
BOOKS: dict[str, Callable[..., MetricsBook]] = {
    "vllm": VllmMetricsBook,
    "sglang": SglangMetricsBook,
    "tgi": TgiMetricsBook,
}


class ExpositionError(OptiInfraError):
    """An engine or an option that no sandbox /metrics book knows."""


def metrics_book(engine: str, *, model_name: str, **labels: Any) -> MetricsBook:
    """A new, empty /metrics book for one server of ``engine``.

    ``labels`` are the engine's own options (label values and sizes the real server takes
    from its launch arguments), e.g. ``max_model_len`` and ``engine_index`` for vLLM,
    ``tensor_parallel_size``/``pipeline_parallel_size``/``dp_rank`` for SGLang,
    ``max_input_tokens``/``max_total_tokens`` for TGI; see each book's signature.
    """
    try:
        book = BOOKS[engine]
    except KeyError:
        raise ExpositionError(
            f"unknown engine {engine!r} for a sandbox /metrics book; "
            f"valid engines: {', '.join(sorted(BOOKS))}"
        ) from None
    _check_options(f"engine {engine!r}", book, labels)
    return book(model_name=model_name, **labels)


def gpu_book(**options: Any) -> GpuBook:
    """A DCGM-exporter book for one server's GPUs (options: see :class:`DcgmGpuBook`)."""
    _check_options("the DCGM exporter book", DcgmGpuBook, options)
    return DcgmGpuBook(**options)


def _check_options(what: str, factory: Callable[..., object], given: dict[str, Any]) -> None:
    accepted = [
        name
        for name, p in inspect.signature(factory).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "model_name"
    ]
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ExpositionError(
            f"{what} does not take {', '.join(unknown)}; its options are: {', '.join(accepted)}"
        )
