"""The sandbox's control API as the adapter sees it: over HTTP, never through imports.

Two documents describe the fleet: ``GET /sandbox`` (deployments, servers, their engine
and DCGM ``/metrics`` URLs, state, configuration id) and ``GET /sandbox/inventory`` (one
row per server: cloud, region, instance type, GPU, market, price, start time). They are
read together and merged by server name into :class:`SandboxServer` values; a server
present in only one of them (it was added or removed between the two reads) keeps what
that one says. Each server's own ``GET /admin/config`` gives its current engine
arguments, which may differ from its deployment's (a canary).

The documents are parsed leniently (unknown fields ignored, so a newer sandbox still
works) but must say ``"sandbox": true``: a URL that answers something else is not a
sandbox, and the error says so rather than reporting an empty fleet.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from optiinfra.errors import OptiInfraError
from providers.prometheus.scrape import TargetError, fetch


class SandboxUnavailable(OptiInfraError):
    """The control API cannot be read or is not a sandbox's (the message names the URL)."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ServerEntry(_Lenient):
    """One server of ``GET /sandbox``."""

    name: str
    state: str = "running"
    config_id: str = ""
    url: str = ""
    metrics_url: str = ""
    dcgm_url: str | None = None


class DeploymentEntry(_Lenient):
    """One deployment of ``GET /sandbox``."""

    name: str
    model: str = ""
    engine: str = ""
    stateless: bool | None = None
    servers: list[ServerEntry] = Field(default_factory=list)


class FleetDocument(_Lenient):
    sandbox: Literal[True]
    deployments: list[DeploymentEntry] = Field(default_factory=list)


class InventoryEntry(_Lenient):
    """One row of ``GET /sandbox/inventory``."""

    instance_id: str
    deployment: str = ""
    provider: str = ""
    tenant: str = ""
    cloud: str = ""
    region: str = ""
    instance_type: str = ""
    gpu: str = ""
    gpu_count: int = 0
    market: str = ""
    price_usd_per_hour: float | None = None
    price_source: str = ""
    stateless: bool | None = None
    state: str = ""
    started_at: float | None = None
    model: str = ""
    engine: str = ""
    url: str = ""


class InventoryDocument(_Lenient):
    sandbox: Literal[True]
    instances: list[InventoryEntry] = Field(default_factory=list)


_Document = TypeVar("_Document", FleetDocument, InventoryDocument)


@dataclass(frozen=True)
class SandboxServer:
    """One server as both documents describe it (``inventory`` is None when the
    inventory did not list it)."""

    name: str
    deployment: str
    state: str
    engine: str
    model: str
    config_id: str
    url: str
    metrics_url: str
    dcgm_url: str | None
    stateless: bool | None
    inventory: InventoryEntry | None

    @property
    def running(self) -> bool:
        return self.state == "running"


def merge_documents(fleet: FleetDocument, inventory: InventoryDocument) -> list[SandboxServer]:
    """Servers of both documents, in ``GET /sandbox`` order, then inventory-only ones."""
    rows = {row.instance_id: row for row in inventory.instances}
    servers: list[SandboxServer] = []
    for d in fleet.deployments:
        for s in d.servers:
            row = rows.pop(s.name, None)
            servers.append(
                SandboxServer(
                    name=s.name,
                    deployment=d.name,
                    state=(row.state if row and row.state else s.state),
                    engine=d.engine or (row.engine if row else ""),
                    model=d.model or (row.model if row else ""),
                    config_id=s.config_id,
                    url=s.url or (row.url if row else ""),
                    metrics_url=s.metrics_url or (f"{s.url}/metrics" if s.url else ""),
                    dcgm_url=s.dcgm_url,
                    stateless=d.stateless if d.stateless is not None else (
                        row.stateless if row else None
                    ),
                    inventory=row,
                )
            )  # fmt: skip
    for row in rows.values():  # listed by the inventory only: no scrape URLs known
        servers.append(
            SandboxServer(
                name=row.instance_id, deployment=row.deployment, state=row.state or "unknown",
                engine=row.engine, model=row.model, config_id="", url=row.url,
                metrics_url="", dcgm_url=None, stateless=row.stateless, inventory=row,
            )
        )  # fmt: skip
    return servers


class SandboxControl:
    """Reads the control API and the servers' ``/admin/config`` with one httpx client."""

    def __init__(
        self, base_url: str, client: httpx.AsyncClient, *, timeout: float, where: str
    ) -> None:
        """``where`` names the setting the URL came from, for errors
        (``provider lab: options.control_url``)."""
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.timeout = timeout
        self.where = where

    async def _document(self, path: str, model: type[_Document]) -> _Document:
        url = f"{self.base_url}{path}"
        try:
            text, _ = await fetch(self.client, url, self.timeout)
        except TargetError as exc:
            raise SandboxUnavailable(
                f"{self.where}: sandbox control API GET {url} failed: {exc}"
            ) from None
        try:
            payload: Any = json.loads(text)
        except json.JSONDecodeError:
            raise SandboxUnavailable(
                f"{self.where}: GET {url} did not answer JSON: is {self.base_url} the "
                "control API of an OptiInfra sandbox (`control` in sandbox/state.json)?"
            ) from None
        if not isinstance(payload, dict) or payload.get("sandbox") is not True:
            raise SandboxUnavailable(
                f"{self.where}: GET {url} is not an OptiInfra sandbox control API "
                '(its answer lacks "sandbox": true)'
            )
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            at = ".".join(str(p) for p in first["loc"])
            raise SandboxUnavailable(
                f"{self.where}: GET {url} answered an unexpected document ({at}: {first['msg']})"
            ) from None

    async def servers(self) -> list[SandboxServer]:
        """Every server of the fleet, from ``GET /sandbox`` and ``GET /sandbox/inventory``."""
        fleet, inventory = await asyncio.gather(
            self._document("/sandbox", FleetDocument),
            self._document("/sandbox/inventory", InventoryDocument),
        )
        return merge_documents(fleet, inventory)

    async def server_config(self, server: SandboxServer) -> dict[str, Any]:
        """The server's ``GET /admin/config`` document; :class:`TargetError` says why not."""
        if not server.url:
            raise TargetError("no URL known for it")
        text, _ = await fetch(self.client, f"{server.url.rstrip('/')}/admin/config", self.timeout)
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            raise TargetError("/admin/config did not answer JSON") from None
        if not isinstance(payload, dict):
            raise TargetError("/admin/config did not answer a JSON object")
        return payload
