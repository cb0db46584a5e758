"""The nodes every agent graph shares: recall memory, explain, emit.

Each returns only what it changed. Runtime dependencies (explainer, memory) arrive in
LangGraph's ``config["configurable"]["deps"]`` so graphs compile once and run with
whatever a flow run or a test injects.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.runnables import RunnableConfig

from agents.common.state import AgentState


def deps_of(config: RunnableConfig | None) -> Any:
    from agents.common.agent import AgentDeps

    configurable = (config or {}).get("configurable", {})
    return configurable.get("deps") or AgentDeps()


def route_after_detect(state: AgentState) -> Literal["recall", "emit"]:
    """Nothing found → straight to emit (no memory lookups, no LLM calls)."""
    return "recall" if state.proposals else "emit"


def recall(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
    """Give each proposal its decision features, recall similar past outcomes, and let
    them adjust confidence, expected saving and first rollout step — or drop a change
    that keeps being rolled back (:mod:`agents.memory`)."""
    deps = deps_of(config)
    if deps.recall is None:
        return {}
    from agents.memory.recall import recall_and_adjust

    proposals, notes = recall_and_adjust(state.proposals, state.context, deps.recall)
    return {"proposals": proposals, "notes": state.notes + notes}


def explain(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
    """Let the explainer reword each narrative; figures stay the detector's."""
    deps = deps_of(config)
    if deps.explainer is None:
        return {}
    from agents.common.explain import explain_proposal

    return {"proposals": [explain_proposal(deps.explainer, p) for p in state.proposals]}


def emit(state: AgentState) -> dict[str, Any]:
    """Final order: largest monthly saving first, then target, for stable output."""
    ordered = sorted(state.proposals, key=lambda p: (-p.monthly_saving_usd(), p.target, p.kind))
    return {"proposals": ordered}
