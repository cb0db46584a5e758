"""The application agent's graph: the standard shape around its two nodes."""

from __future__ import annotations

from typing import Any

from agents.application import nodes
from agents.common.graph import agent_graph


def build_graph() -> Any:
    return agent_graph("application", load_context=nodes.load_context, detect=nodes.detect)
