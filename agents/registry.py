"""Agents found by name, like providers: a new agent registers and the coordinator and
the optimize flow pick it up without changing."""

from __future__ import annotations

from importlib import import_module

from agents.common.agent import Agent

_REGISTRY: dict[str, type[Agent]] = {}

#: Modules that register the built-in agents when imported.
BUILTIN_MODULES = (
    "agents.cost.agent",
    "agents.performance.agent",
    "agents.application.agent",
    "agents.resource.agent",
)


def register_agent(cls: type[Agent]) -> type[Agent]:
    """Class decorator: make ``cls`` findable by its ``name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"agent {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        import_module(module)


def agent_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get_agent(name: str) -> Agent:
    _load_builtins()
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise KeyError(f"unknown agent {name!r}; agents: {', '.join(sorted(_REGISTRY))}") from None


def all_agents(names: list[str] | None = None) -> list[Agent]:
    """Fresh instances of the named agents (default: all), highest authority first."""
    chosen = [get_agent(n) for n in (names or agent_names())]
    return sorted(chosen, key=lambda a: (-a.authority, a.name))
