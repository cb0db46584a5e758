"""The resource agent: load forecasts, replicas by hour of day, runway.

Schedules are sized on the forecast's upper bound or the point forecast with headroom,
per replica at the capacity model's rate within the targets (corrected by the
deployment's own metrics), and only for stateless deployments (scaling a stateful one
down drops its state). It has no view on other agents' proposals yet.
"""

from __future__ import annotations

from typing import Any

from agents.common.agent import Agent
from agents.registry import register_agent
from agents.resource.graph import build_graph


@register_agent
class ResourceAgent(Agent):
    name = "resource"
    authority = 1

    def build_graph(self) -> Any:
        return build_graph()
