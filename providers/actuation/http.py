"""An httpx client per call, for the HTTP actuators.

An ``httpx.AsyncClient`` keeps connections bound to the event loop that opened them, and
a rollout may call one actuator from several loops (each Prefect task run, each
``asyncio.run``). So unless a client is injected (tests, a shared pool), each outermost
public call opens its own client and closes it on return; nested calls share it.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import httpx

P = ParamSpec("P")
R = TypeVar("R")


class HttpSession:
    """The injected client, or one opened per outermost call (see the module docstring)."""

    def __init__(self, client: httpx.AsyncClient | None, **client_kwargs: Any) -> None:
        self.injected = client
        self.client_kwargs = client_kwargs
        self._current: ContextVar[httpx.AsyncClient | None] = ContextVar(
            f"actuator_http_{id(self)}", default=None
        )

    @asynccontextmanager
    async def open(self) -> AsyncIterator[httpx.AsyncClient]:
        if self.injected is not None:
            yield self.injected
            return
        current = self._current.get()
        if current is not None:
            yield current
            return
        async with httpx.AsyncClient(**self.client_kwargs) as client:
            token = self._current.set(client)
            try:
                yield client
            finally:
                self._current.reset(token)

    @property
    def client(self) -> httpx.AsyncClient:
        """The client of the call in progress (only inside :meth:`open`)."""
        client = self.injected or self._current.get()
        if client is None:
            raise RuntimeError("no HTTP session open: call through a public actuator method")
        return client


class _HasSession(Protocol):
    http: HttpSession


S = TypeVar("S", bound=_HasSession)


def in_session(
    fn: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Awaitable[R]]:
    """Run an actuator method inside its :class:`HttpSession`."""

    @functools.wraps(fn)
    async def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        async with self.http.open():
            return await fn(self, *args, **kwargs)

    return wrapper
