"""The fleet as agents see it: frames read once per optimize run from the stores.

:func:`load_context` runs a handful of aggregate queries (never a raw export) and
returns a :class:`FleetContext`; :meth:`FleetContext.from_frames` builds the same thing
from frames, which is how detector tests and the benchmark construct fleets.
"""

from agents.context.fleet import FleetContext, Targets
from agents.context.load import ContextWindow, load_context
from agents.context.stats import DEPLOYMENT_STATS_COLUMNS, deployment_stats

__all__ = [
    "DEPLOYMENT_STATS_COLUMNS",
    "ContextWindow",
    "FleetContext",
    "Targets",
    "deployment_stats",
    "load_context",
]
