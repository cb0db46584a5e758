"""The sandbox's offered load: request schedules, prompt texts and the load generator.

- :func:`schedule` turns a deployment's :class:`~optiinfra.sandbox.spec.LoadSpec` into the
  requests it receives over a duration (trace replay, Poisson or diurnal);
- :class:`PromptBuilder` writes each request's prompt as N words, Mooncake prefix blocks
  shared word for word;
- :class:`LoadGenerator` sends them in real time to a deployment's replicas and records
  what each request met (:class:`RequestRecord`, :class:`LoadResult`, :class:`LoadSummary`).
"""

from optiinfra.sandbox.load.generator import LoadGenerator, completions_url
from optiinfra.sandbox.load.prompts import DEFAULT_MAX_PROMPT_WORDS, PromptBuilder
from optiinfra.sandbox.load.records import (
    OUTCOMES,
    LoadResult,
    LoadSummary,
    Outcome,
    RequestRecord,
)
from optiinfra.sandbox.load.schedule import (
    LENGTH_SIGMA,
    MAX_REQUESTS,
    Schedule,
    ScheduleError,
    TraceRequest,
    cycle_factor,
    diurnal_rate,
    expected_requests,
    schedule,
    trace_period_s,
)

__all__ = [
    "DEFAULT_MAX_PROMPT_WORDS",
    "LENGTH_SIGMA",
    "MAX_REQUESTS",
    "OUTCOMES",
    "LoadGenerator",
    "LoadResult",
    "LoadSummary",
    "Outcome",
    "PromptBuilder",
    "RequestRecord",
    "Schedule",
    "ScheduleError",
    "TraceRequest",
    "completions_url",
    "cycle_factor",
    "diurnal_rate",
    "expected_requests",
    "schedule",
    "trace_period_s",
]
