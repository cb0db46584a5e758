"""A sandbox fleet served from a background thread, for tests whose own code is sync
(Prefect flows, the CLI): the fleet runs its own event loop until the context exits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from optiinfra.sandbox.fleet import Fleet
from optiinfra.sandbox.spec import FleetSpec


class SandboxThread:
    def __init__(self, spec: FleetSpec, *, load: bool = True) -> None:
        self.spec = spec
        self.load = load
        self.fleet: Fleet | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sandbox", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to the test by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.fleet = Fleet(self.spec)
        await self.fleet.start()
        if self.load:
            self.fleet.start_loads()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.fleet.stop()

    def start(self) -> Fleet:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        assert self.fleet is not None
        return self.fleet

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the fleet's loop (the fleet is not thread-safe)."""
        assert self._loop is not None

        async def call() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(30)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@contextmanager
def sandbox_thread(spec: FleetSpec, *, load: bool = True) -> Iterator[SandboxThread]:
    runner = SandboxThread(spec, load=load)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()
