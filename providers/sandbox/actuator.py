"""The ``sandbox`` actuator: changes a sandbox deployment over its HTTP admin endpoints.

A fraction ``f`` of a deployment of ``n`` servers is ``ceil(f x n)`` *canary servers*
(the first ones in the control API's order, which is stable) switched to the baseline
configuration with the change applied, through each server's ``PUT /admin/config``;
the other servers are put back on (or kept on) their baseline configuration. A change of
``replicas`` scales the whole deployment through the control API's
``PATCH /sandbox/deployments/{name}`` by the same fraction of the move. Every step is
verified by reading each server's ``GET /admin/config`` back.

A server's configuration here is its changeable fields (``engine_args``, ``gpu``,
``model``, ``engine``, ``market``): the same set the sandbox accepts on
``/admin/config``. ``instance_type`` and ``gpu_count`` are accepted but not sent: the
sandbox derives the instance type from GPU and market, and the GPU count from the
parallelism engine arguments.

Pure HTTP, like the collection adapter: nothing here imports ``optiinfra.sandbox``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import httpx
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from optiinfra.errors import OptiInfraError
from providers.actuation.base import Actuator, canary_count, check_fraction, scaled_total
from providers.actuation.errors import ActuationError
from providers.actuation.http import HttpSession, in_session
from providers.actuation.records import (
    ActuationStatus,
    Baseline,
    Change,
    RunningState,
    Target,
    Variant,
    digest,
    step_key,
)
from providers.actuation.registry import register_actuator
from providers.prometheus.scrape import TargetError
from providers.sandbox.control import SandboxControl, SandboxServer

#: A server's changeable fields (the sandbox's ``/admin/config`` accepts exactly these).
CONFIG_FIELDS = ("engine_args", "gpu", "model", "engine", "market")
#: Change keys accepted but not sent, and why.
DERIVED = {
    "instance_type": "the sandbox derives the instance type from the GPU and market",
    "gpu_count": "the sandbox derives the GPU count from tensor/pipeline parallelism",
}


class SandboxActuatorOptions(BaseModel):
    """``options:`` of a ``sandbox`` actuator."""

    model_config = ConfigDict(extra="forbid")

    control_url: AnyHttpUrl = Field(
        description="Base URL of the sandbox control API (`control` in sandbox/state.json)."
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="Per HTTP request to the control API or a server."
    )

    @property
    def base_url(self) -> str:
        return str(self.control_url).rstrip("/").removesuffix("/sandbox")


def server_config(document: dict[str, Any]) -> dict[str, Any]:
    """A server's changeable fields from its ``GET /admin/config`` document."""
    spec = document.get("spec")
    if not isinstance(spec, dict):
        raise TargetError("/admin/config has no spec object")
    return {k: spec[k] for k in CONFIG_FIELDS if k in spec}


def with_change(config: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``change`` applied (``engine_args`` merged key by key)."""
    out = dict(config)
    for key, value in change.items():
        if key == "engine_args":
            out[key] = {**config.get("engine_args", {}), **value}
        else:
            out[key] = value
    return out


@register_actuator
class SandboxActuator(Actuator):
    """Applies changes to the local sandbox fleet through its admin endpoints."""

    kind = "sandbox"
    description = "the sandbox fleet's /admin/config and control API"
    changes: ClassVar[frozenset[str]] = frozenset(
        {*CONFIG_FIELDS, "replicas", "replicas_to_spot", *DERIVED}
    )
    unsupported: ClassVar[dict[str, str]] = {
        "image": "sandbox servers are simulated: they have no container image",
    }
    Options = SandboxActuatorOptions

    def __init__(
        self,
        options: SandboxActuatorOptions,
        *,
        credentials: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.options = options
        self.http = HttpSession(client, timeout=options.timeout_seconds)

    @property
    def client(self) -> httpx.AsyncClient:
        return self.http.client

    @property
    def control(self) -> SandboxControl:
        return SandboxControl(
            self.options.base_url,
            self.http.client,
            timeout=self.options.timeout_seconds,
            where=f"sandbox actuator ({self.options.base_url})",
        )

    # --- HTTP ----------------------------------------------------------------------------

    async def _servers(self, target: Target) -> list[SandboxServer]:
        try:
            servers = await self.control.servers()
        except OptiInfraError as exc:
            raise ActuationError(
                exc.message, endpoint=f"{self.options.base_url}/sandbox", deployment=str(target)
            ) from None
        mine = [s for s in servers if s.deployment == target.deployment]
        if not mine:  # a deployment scaled to zero is still listed by GET /sandbox
            known = await self._deployment_names()
            if target.deployment not in known:
                raise ActuationError(
                    f"no such sandbox deployment; known: {sorted(known)}",
                    endpoint=f"{self.options.base_url}/sandbox",
                    deployment=str(target),
                )
        return mine

    async def _deployment_names(self) -> set[str]:
        text = await self._send("GET", f"{self.options.base_url}/sandbox", None, "")
        return {d.get("name", "") for d in json.loads(text).get("deployments", [])}

    async def _send(self, method: str, url: str, body: Any, deployment: str) -> str:
        try:
            response = await self.client.request(
                method, url, json=body, timeout=self.options.timeout_seconds
            )
        except httpx.TimeoutException:
            raise ActuationError(
                f"{method} timed out after {self.options.timeout_seconds:g} s",
                endpoint=url,
                deployment=deployment,
            ) from None
        except httpx.HTTPError as exc:
            raise ActuationError(
                f"{method} failed: {type(exc).__name__}: {exc}", endpoint=url, deployment=deployment
            ) from None
        if response.status_code >= 300:
            raise ActuationError(
                f"{method} answered HTTP {response.status_code}: {response.text[:300]}",
                endpoint=url,
                deployment=deployment,
            )
        return response.text

    async def _configs(
        self, servers: list[SandboxServer], target: Target
    ) -> dict[str, dict[str, Any]]:
        """Each running server's ``/admin/config`` document (others are left out)."""

        async def one(server: SandboxServer) -> tuple[str, dict[str, Any]]:
            try:
                return server.name, await self.control.server_config(server)
            except TargetError as exc:
                raise ActuationError(
                    f"GET /admin/config of server {server.name} failed: {exc}",
                    endpoint=f"{server.url}/admin/config",
                    deployment=str(target),
                ) from None

        running = [s for s in servers if s.running]
        return dict(await asyncio.gather(*(one(s) for s in running)))

    async def _scale(self, target: Target, replicas: int) -> None:
        url = f"{self.options.base_url}/sandbox/deployments/{target.deployment}"
        await self._send("PATCH", url, {"replicas": replicas}, str(target))

    # --- the protocol --------------------------------------------------------------------

    @in_session
    async def snapshot(self, target: Target) -> Baseline:
        servers = await self._servers(target)
        documents = await self._configs(servers, target)
        units = {name: server_config(doc) for name, doc in documents.items()}
        first = next(iter(units.values()), {})
        return Baseline(
            target=target,
            kind=self.kind,
            replicas=len(servers),
            config=first,
            units=units,
            data={"servers": [s.name for s in servers]},
        )

    @in_session
    async def apply(
        self, target: Target, change: Change, fraction: float, baseline: Baseline
    ) -> ActuationStatus:
        fraction = check_fraction(fraction)
        self.check(change, target)
        changed = 0
        notes = [f"{k} not sent: {DERIVED[k]}" for k in sorted(change.keys() & set(DERIVED))]
        servers = await self._servers(target)
        if change.replicas is not None:
            want = scaled_total(fraction, baseline.replicas, change.replicas)
            if len(servers) != want:
                await self._scale(target, want)
                changed += 1
                servers = await self._servers(target)
        config_change = {k: v for k, v in change.as_dict().items() if k in CONFIG_FIELDS}
        desired = self._desired(servers, baseline, config_change, change, fraction)
        changed += await self._converge(target, servers, desired, notes)
        running = await self.read_back(target, baseline)
        done = self._verify(running, servers, desired, notes)
        if config_change:
            canaries = sum(1 for s in servers if s.name in desired and desired[s.name][1])
            achieved = running.canary_share if servers else 0.0
            notes.append(f"{canaries} of {len(servers)} servers run the change")
        else:
            span = abs((change.replicas or 0) - baseline.replicas)
            achieved = abs(len(servers) - baseline.replicas) / span if span else 1.0
        return ActuationStatus(
            target=target,
            kind=self.kind,
            action="apply",
            fraction=fraction,
            achieved_fraction=min(1.0, achieved),
            changed=changed,
            done=done,
            idempotency_key=step_key("apply", target, change, fraction),
            detail="; ".join(notes),
            running=running,
        )

    @staticmethod
    def _desired(
        servers: list[SandboxServer],
        baseline: Baseline,
        config_change: dict[str, Any],
        change: Change,
        fraction: float,
    ) -> dict[str, tuple[dict[str, Any], bool]]:
        """Server name → (the configuration it must run, whether that is the canary's)."""
        covered = len(servers)
        if change.replicas_to_spot is not None:
            covered = min(covered, change.replicas_to_spot)
        k = canary_count(fraction, covered) if config_change else 0
        out = {}
        for i, server in enumerate(servers):
            base = baseline.units.get(server.name, baseline.config)
            out[server.name] = (with_change(base, config_change), True) if i < k else (base, False)
        return out

    async def _converge(
        self,
        target: Target,
        servers: list[SandboxServer],
        desired: dict[str, tuple[dict[str, Any], bool]],
        notes: list[str],
    ) -> int:
        """PUT each running server's desired configuration where it differs; how many."""
        documents = await self._configs(servers, target)
        todo = []
        for server in servers:
            if not server.running:
                notes.append(f"server {server.name} is {server.state}: not changed")
                continue
            want, _ = desired[server.name]
            if server_config(documents[server.name]) != want:
                todo.append((server, want))

        async def put(server: SandboxServer, want: dict[str, Any]) -> None:
            url = f"{server.url.rstrip('/')}/admin/config"
            await self._send("PUT", url, want, str(target))

        await asyncio.gather(*(put(s, w) for s, w in todo))
        return len(todo)

    @staticmethod
    def _verify(
        running: RunningState,
        servers: list[SandboxServer],
        desired: dict[str, tuple[dict[str, Any], bool]],
        notes: list[str],
    ) -> bool:
        """Whether every server reads back as desired; an error when one was refused."""
        by_server = {m: v.config for v in running.variants for m in v.members}
        done = True
        for server in servers:
            if server.name not in by_server:
                done = False  # not running: noted by _converge
                continue
            if by_server[server.name] != desired[server.name][0]:
                raise ActuationError(
                    f"server {server.name} reads back {by_server[server.name]} after the "
                    f"change, not {desired[server.name][0]}",
                    endpoint=f"{server.url}/admin/config",
                    deployment=running.target.deployment,
                )
        return done

    @in_session
    async def read_back(self, target: Target, baseline: Baseline | None = None) -> RunningState:
        servers = await self._servers(target)
        documents = await self._configs(servers, target)
        groups: dict[str, list[str]] = {}
        configs: dict[str, dict[str, Any]] = {}
        ids: dict[str, set[str]] = {}
        for name, doc in documents.items():
            cfg = server_config(doc)
            key = digest(cfg, 12)
            groups.setdefault(key, []).append(name)
            configs[key] = cfg
            ids.setdefault(key, set()).add(str(doc.get("config_id", "")))
        total = len(servers)
        variants = []
        for key, members in groups.items():
            role: Any = "unknown"
            if baseline is not None:
                is_base = all(
                    configs[key] == baseline.units.get(m, baseline.config) for m in members
                )
                role = "baseline" if is_base else "canary"
            sandbox_id = next(iter(ids[key])) if len(ids[key]) == 1 else ""
            variants.append(
                Variant(
                    name=key,
                    role=role,
                    config_id=sandbox_id or key,
                    config=configs[key],
                    replicas=len(members),
                    ready_replicas=len(members),
                    share=len(members) / total if total else 0.0,
                    members=members,
                )
            )
        down = [s.name for s in servers if not s.running]
        detail = f"not running: {', '.join(down)}" if down else ""
        return RunningState(target=target, kind=self.kind, variants=variants, detail=detail)

    @in_session
    async def revert(self, target: Target, baseline: Baseline) -> ActuationStatus:
        changed = 0
        notes: list[str] = []
        servers = await self._servers(target)
        if len(servers) != baseline.replicas:
            await self._scale(target, baseline.replicas)
            changed += 1
            servers = await self._servers(target)
        desired = {s.name: (baseline.units.get(s.name, baseline.config), False) for s in servers}
        changed += await self._converge(target, servers, desired, notes)
        running = await self.read_back(target, baseline)
        done = self._verify(running, servers, desired, notes)
        return ActuationStatus(
            target=target,
            kind=self.kind,
            action="revert",
            fraction=0.0,
            achieved_fraction=running.canary_share,
            changed=changed,
            done=done and len(servers) == baseline.replicas,
            idempotency_key=step_key("revert", target, None, 0.0),
            detail="; ".join(notes),
            running=running,
        )

    @in_session
    async def promote(self, target: Target, change: Change, baseline: Baseline) -> ActuationStatus:
        """Write the change into the deployment's own spec (``PATCH`` on the control API),
        so servers added later run it too. A change that covers only some replicas
        (``replicas_to_spot``) leaves the deployment's spec as it is."""
        self.check(change, target)
        body = {k: v for k, v in change.as_dict().items() if k in CONFIG_FIELDS}
        notes: list[str] = []
        servers = await self._servers(target)
        partial = change.replicas_to_spot is not None and change.replicas_to_spot < len(servers)
        if change.replicas is not None:
            body["replicas"] = change.replicas
        if partial:
            notes.append("the change covers some replicas only: the deployment spec is kept")
            body = {"replicas": body["replicas"]} if "replicas" in body else {}
        changed = 0
        if body:
            url = f"{self.options.base_url}/sandbox/deployments/{target.deployment}"
            await self._send("PATCH", url, body, str(target))
            changed = 1
        running = await self.read_back(target, baseline)
        return ActuationStatus(
            target=target,
            kind=self.kind,
            action="promote",
            fraction=1.0,
            achieved_fraction=running.canary_share,
            changed=changed,
            done=True,
            idempotency_key=step_key("promote", target, change, 1.0),
            detail="; ".join(notes),
            running=running,
        )
