"""The one interface through which agents join the coordinator.

An agent is a class with a ``name``, a compiled LangGraph graph that turns a
:class:`~agents.context.FleetContext` into proposals, and an ``assess`` method that
gives its view of another agent's proposal. The coordinator only ever calls
:meth:`Agent.propose` and :meth:`Agent.assess`, so a new agent joins by being
registered (:mod:`agents.registry`), without changing the coordinator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agents.common.proposals import Assessment, Delta, Proposal, Verdict
from agents.common.state import AgentState
from agents.context import FleetContext


@dataclass
class AgentDeps:
    """What agents need besides the context, injected per run (tests pass fakes of none).

    ``explainer`` writes narratives (``optiinfra.llm``; None = the template text);
    ``recall`` returns the nearest past decisions for a proposal (None = no memory);
    ``capacity`` is the capacity model (None = the default fitted on public tables).
    """

    explainer: Any | None = None
    recall: Callable[[Proposal], list[dict[str, Any]]] | None = None
    capacity: Any | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def capacity_model(self) -> Any:
        if self.capacity is None:
            from optiinfra.capacity import CapacityModel

            self.capacity = CapacityModel.default()
        return self.capacity


class Agent(ABC):
    """Base of the four agents: a graph to propose, a method to assess."""

    #: Registry name, also the ``agent`` of its proposals.
    name: ClassVar[str]
    #: Place in the conflict policy: higher wins (performance 2 > cost 1).
    authority: ClassVar[int] = 0

    def __init__(self) -> None:
        self._graph: Any = None

    @abstractmethod
    def build_graph(self) -> Any:
        """The compiled LangGraph graph (see :func:`agents.common.graph.agent_graph`)."""

    @property
    def graph(self) -> Any:
        if self._graph is None:
            self._graph = self.build_graph()
        return self._graph

    def run(
        self, context: FleetContext, deps: AgentDeps | None = None
    ) -> tuple[list[Proposal], list[str]]:
        """Run the graph on ``context``: the proposals it emits and its notes."""
        result = self.graph.invoke(
            AgentState(context=context), config={"configurable": {"deps": deps or AgentDeps()}}
        )
        return list(result["proposals"]), list(result.get("notes", []))

    def propose(self, context: FleetContext, deps: AgentDeps | None = None) -> list[Proposal]:
        """The proposals alone (see :meth:`run`)."""
        return self.run(context, deps)[0]

    def assess(
        self, proposal: Proposal, context: FleetContext, deps: AgentDeps | None = None
    ) -> Assessment | None:
        """This agent's view of another agent's proposal; None = nothing to say."""
        return None

    def _verdict(
        self,
        proposal: Proposal,
        verdict: Verdict,
        reason: str,
        deltas: dict[str, Delta] | None = None,
    ) -> Assessment:
        """An assessment of ``proposal`` by this agent."""
        return Assessment(
            agent=self.name,
            proposal_key=proposal.key,
            verdict=verdict,
            reason=reason,
            predicted_deltas=deltas or {},
        )
