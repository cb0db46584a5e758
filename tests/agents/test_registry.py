"""Every registered agent meets the standard: a name, an authority, the standard graph
shape, a quiet run on an empty fleet. A new agent is checked by being registered."""

from __future__ import annotations

from typing import Any

import pytest

from agents.common.agent import Agent
from agents.registry import _REGISTRY, agent_names, all_agents, get_agent, register_agent
from tests.agents.fleets import context

AGENTS = agent_names()

#: The standard shape (agents/common/graph.py): (source, target, conditional).
STANDARD_EDGES = {
    ("__start__", "load_context", False),
    ("load_context", "detect", False),
    ("detect", "recall", True),  # something found
    ("detect", "emit", True),  # nothing found: no memory lookups, no LLM calls
    ("recall", "explain", False),
    ("explain", "emit", False),
    ("emit", "__end__", False),
}


def test_the_builtin_agents_are_registered() -> None:
    assert {"cost", "performance"} <= set(AGENTS)


@pytest.mark.parametrize("name", AGENTS)
def test_a_registered_agent_meets_the_standard(name: str) -> None:
    agent = get_agent(name)

    assert isinstance(agent, Agent)
    assert agent.name == name
    assert [n for n in AGENTS if type(get_agent(n)).name == name] == [name]
    assert isinstance(agent.authority, int) and not isinstance(agent.authority, bool)
    graph = agent.graph.get_graph()
    assert set(graph.nodes) == {
        "__start__",
        "load_context",
        "detect",
        "recall",
        "explain",
        "emit",
        "__end__",
    }
    edges = {(e.source, e.target, e.conditional) for e in graph.edges}
    assert edges == STANDARD_EDGES
    assert len(graph.edges) == len(STANDARD_EDGES)

    proposals, notes = agent.run(context([]))

    assert proposals == []
    assert all(isinstance(n, str) for n in notes)


def test_performance_outranks_cost() -> None:
    assert get_agent("performance").authority > get_agent("cost").authority
    ordered = [a.name for a in all_agents()]
    assert ordered.index("performance") < ordered.index("cost")
    assert sorted(ordered) == AGENTS


def test_each_lookup_gives_a_fresh_agent() -> None:
    assert get_agent("cost") is not get_agent("cost")


def test_an_unknown_agent_is_refused_with_the_known_names() -> None:
    with pytest.raises(KeyError) as caught:
        get_agent("nope")

    message = str(caught.value)
    assert "'nope'" in message
    for name in AGENTS:
        assert name in message


def test_a_second_class_under_a_taken_name_is_refused() -> None:
    original = type(get_agent("cost"))

    class Impostor(Agent):
        name = "cost"
        authority = 99

        def build_graph(self) -> Any:
            raise AssertionError("never built")

    with pytest.raises(ValueError, match="'cost' registered twice"):
        register_agent(Impostor)

    assert type(get_agent("cost")) is original
    assert register_agent(original) is original  # re-registering the same class is harmless
    assert _REGISTRY["cost"] is original
