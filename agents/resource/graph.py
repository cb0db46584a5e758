"""The resource agent's graph: the standard shape around its two nodes."""

from __future__ import annotations

from typing import Any

from agents.common.graph import agent_graph
from agents.resource import nodes


def build_graph() -> Any:
    return agent_graph("resource", load_context=nodes.load_context, detect=nodes.detect)
