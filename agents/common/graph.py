"""The graph shape of DESIGN.md, wired once for every agent.

    load_context → detect → (nothing found? → emit) → recall → explain → emit

An agent provides its own ``load_context`` and ``detect`` nodes (plain functions over
:class:`~agents.common.state.AgentState`); the rest is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph

from agents.common import nodes
from agents.common.state import AgentState

Node = Callable[..., dict[str, Any]]


def agent_graph(name: str, *, load_context: Node, detect: Node) -> Any:
    """Compile the standard agent graph around an agent's two own nodes."""
    graph = StateGraph(AgentState)
    graph.add_node("load_context", load_context)
    graph.add_node("detect", detect)
    graph.add_node("recall", nodes.recall)
    graph.add_node("explain", nodes.explain)
    graph.add_node("emit", nodes.emit)
    graph.add_edge(START, "load_context")
    graph.add_edge("load_context", "detect")
    graph.add_conditional_edges("detect", nodes.route_after_detect)
    graph.add_edge("recall", "explain")
    graph.add_edge("explain", "emit")
    graph.add_edge("emit", END)
    return graph.compile(name=name)
