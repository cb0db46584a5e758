"""Scaffolding every agent shares: proposals, the agent interface, the graph shape."""

from agents.common.agent import Agent, AgentDeps
from agents.common.proposals import (
    HOURS_PER_MONTH,
    Assessment,
    Delta,
    Proposal,
    Risk,
    Verdict,
)

__all__ = [
    "HOURS_PER_MONTH",
    "Agent",
    "AgentDeps",
    "Assessment",
    "Delta",
    "Proposal",
    "Risk",
    "Verdict",
]
