"""A whole sandbox fleet in one asyncio process: its servers, ports, prices and control API.

:class:`Fleet` turns a :class:`~optiinfra.sandbox.spec.FleetSpec` into running
:class:`~optiinfra.sandbox.server.SimServer` replicas, each on its own loopback port
(plus a DCGM-exporter port), and serves a control API on one more port:

- ``GET /sandbox`` — every deployment and replica with its endpoints (what ``optiinfra
  sandbox status`` prints and what a collector's configuration is written from);
- ``GET /sandbox/inventory`` — one row per server: GPU, count, market, price per hour,
  state, started (the sandbox's stand-in for a cloud's instance API);
- ``PATCH /sandbox/deployments/{name}`` — change replicas, engine arguments, GPU or
  market of a whole deployment (the sandbox actuator's entry point);
- ``GET /sandbox/truth`` — ground truth per deployment (served, latency, accuracy);
- ``POST /sandbox/servers/{name}/interrupt`` — interrupt a server now, as the spot
  market would (any server, so tests can interrupt on-demand ones too).

Every response says ``"sandbox": true``: nothing here is a real fleet.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import zlib
from pathlib import Path
from typing import Any

from optiinfra.catalog import gpu_spec, model_spec
from optiinfra.config import load_yaml_model
from optiinfra.errors import ConfigError, ConfigIssue
from optiinfra.sandbox.checks import CHANGEABLE, changed_spec, deployment_problems
from optiinfra.sandbox.http import HTTPError, Listener, Request, Response
from optiinfra.sandbox.pricing import server_price
from optiinfra.sandbox.quality import QualityModel
from optiinfra.sandbox.server import SANDBOX_NOTICE, ServerIdentity, SimServer
from optiinfra.sandbox.spec import DeploymentSpec, FleetSpec

BUNDLED_FLEETS = ("default", "healthy", "diurnal", "quality", "fragile")


class LoadStats:
    """Outcomes of one deployment's generated requests so far (client side)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.latency_sum = 0.0
        self.completed = 0

    def add(self, record: Any) -> None:
        self.outcomes[record.outcome] = self.outcomes.get(record.outcome, 0) + 1
        latency = record.latency_s
        if record.outcome == "ok" and latency is not None:
            self.completed += 1
            self.latency_sum += latency

    def summary(self) -> dict[str, Any]:
        mean = self.latency_sum / self.completed if self.completed else None
        return {"outcomes": dict(self.outcomes), "mean_latency_s": mean}


def bundled_fleet_path(name: str) -> Path:
    return Path(__file__).parent / "fleets" / f"{name}.yaml"


def load_fleet(source: str | Path) -> FleetSpec:
    """A bundled fleet by name (``default``, ``healthy``, ``diurnal``) or a fleet YAML file.

    Besides the schema, every deployment's model and GPU must be in the catalog and the
    model must fit on its GPUs; problems are reported with file, line and field.
    """
    path = bundled_fleet_path(str(source)) if str(source) in BUNDLED_FLEETS else Path(source)
    spec = load_yaml_model(path, FleetSpec)
    problems = [
        ConfigIssue(str(path), None, f"deployments[{i}].{field}", message)
        for i, d in enumerate(spec.deployments)
        for field, message in deployment_problems(d)
    ]
    if problems:
        raise ConfigError(problems)
    return spec


class Fleet:
    """The running world. ``await start()``, then ``await stop()``."""

    def __init__(self, spec: FleetSpec, *, quality: QualityModel | None = None) -> None:
        self.spec = spec
        self.settings = spec.sandbox
        self.quality = quality or QualityModel()
        self.deployments: dict[str, DeploymentSpec] = {d.name: d for d in spec.deployments}
        self.servers: dict[str, list[SimServer]] = {d.name: [] for d in spec.deployments}
        self._listeners: dict[str, tuple[Listener, Listener | None]] = {}
        self.control: Listener | None = None
        self._next_port = spec.sandbox.base_port
        self._tasks: list[asyncio.Task[Any]] = []
        self._rng = random.Random(spec.sandbox.seed)
        self._replica_counter: dict[str, int] = {}
        self.started_at = time.time()
        self.loads: dict[str, LoadStats] = {}
        self._generators: dict[str, Any] = {}

    # --- life cycle --------------------------------------------------------------------

    async def start(self, *, control_port: int = 0) -> None:
        for d in self.spec.deployments:
            for _ in range(d.replicas):
                await self._add_server(d)
        self.control = await Listener.open(self._control, self.settings.host, control_port)
        if self.settings.spot_interruptions_per_hour > 0:
            self._tasks.append(asyncio.create_task(self._spot_market()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for servers in self.servers.values():
            for server in servers:
                server.state = "stopped"
                server.engine.abort_all(server.now())
        for engine_listener, dcgm_listener in self._listeners.values():
            await engine_listener.close()
            if dcgm_listener is not None:
                await dcgm_listener.close()
        self._listeners.clear()
        if self.control is not None:
            await self.control.close()
            self.control = None

    def _port(self) -> int:
        if self._next_port == 0:
            return 0
        port = self._next_port
        self._next_port += 1
        return port

    async def _add_server(self, d: DeploymentSpec) -> SimServer:
        replica = self._replica_counter.get(d.name, 0)
        self._replica_counter[d.name] = replica + 1
        identity = ServerIdentity(
            deployment=d.name,
            replica=replica,
            hostname=f"sandbox-{d.name}-{replica}",
            seed=self._rng.randrange(1 << 31),
        )
        server = SimServer(d, identity, noise=self.settings.noise, quality=self.quality)
        server.attach(asyncio.get_running_loop())
        engine_listener = await Listener.open(server.handle, self.settings.host, self._port())
        server.port = engine_listener.port
        dcgm_listener = None
        if d.dcgm:
            dcgm_listener = await Listener.open(server.dcgm, self.settings.host, self._port())
            server.dcgm_port = dcgm_listener.port
        self._listeners[server.name] = (engine_listener, dcgm_listener)
        self.servers[d.name].append(server)
        return server

    async def _remove_server(self, server: SimServer) -> None:
        server.state = "stopped"
        server.engine.abort_all(server.now())
        engine_listener, dcgm_listener = self._listeners.pop(server.name)
        await engine_listener.close()
        if dcgm_listener is not None:
            await dcgm_listener.close()
        self.servers[server.identity.deployment].remove(server)

    # --- offered load --------------------------------------------------------------------

    def start_loads(self) -> None:
        """Start each deployment's load generator (those whose load kind is not none)."""
        for name, d in self.deployments.items():
            if d.load.kind != "none":
                self.loads[name] = LoadStats()
                self._tasks.append(asyncio.create_task(self._drive_load(name)))

    async def _drive_load(self, name: str) -> None:
        """Replay one deployment's schedule window after window, for as long as we run.

        A trace repeats after its period; a diurnal profile after one day; Poisson
        arrivals are drawn an hour at a time. Each window has its own seed.
        """
        from optiinfra.sandbox.load import LoadGenerator, PromptBuilder, schedule, trace_period_s
        from optiinfra.sandbox.traces import load_trace

        d = self.deployments[name]
        stats = self.loads[name]
        generator = LoadGenerator(
            [self.endpoint(s) for s in self.servers[name]],
            d.model,
            concurrency=512,
            # one kept connection per replica at least: round-robin over more replicas
            # than kept connections would open a new connection for every request
            max_keepalive=max(16, 2 * len(self.servers[name])),
            timeout_s=600.0,
            keep_records=False,
            on_record=stats.add,
        )
        self._generators[name] = generator
        window = 0
        while True:
            d = self.deployments[name]
            if d.load.kind == "trace":
                duration = trace_period_s(load_trace(d.load.trace), d.load.time_scale)
            elif d.load.kind == "diurnal":
                duration = d.load.day_seconds
            else:
                duration = 3600.0
            load = d.load
            if load.seed is not None:  # a fixed seed still varies from window to window
                load = load.model_copy(update={"seed": load.seed + window})
            seed = self.settings.seed * 1000 + window + zlib.crc32(name.encode())
            plan = schedule(load, duration, seed=seed, start_epoch=time.time())
            # prompts fit the served context (the trace's longest would be refused), and
            # each window's request-unique words differ; Mooncake's shared prefix blocks
            # keep their text, so a conversation prefix seen an hour ago can still hit
            context = d.engine_args.max_model_len or model_spec(d.model).max_context
            generator.prompts = PromptBuilder(max(1024, context - 2048), salt=f"w{window}")
            await generator.run(plan)
            window += 1

    # --- spot interruptions ------------------------------------------------------------

    async def _spot_market(self) -> None:
        """Interrupt spot servers as a Poisson process per server."""
        rate = self.settings.spot_interruptions_per_hour / 3600.0
        tick = 1.0
        while True:
            await asyncio.sleep(tick)
            for servers in self.servers.values():
                for server in list(servers):
                    if (
                        server.spec.market == "spot"
                        and server.state == "running"
                        and self._rng.random() < rate * tick
                    ):
                        await self.interrupt(server)

    async def interrupt(self, server: SimServer) -> None:
        """Take a server down for ``spot_restart_seconds``: its port refuses connections."""
        server.interrupt()
        engine_listener, dcgm_listener = self._listeners[server.name]
        await engine_listener.close()
        if dcgm_listener is not None:
            await dcgm_listener.close()
        self._tasks.append(asyncio.create_task(self._restart_later(server)))

    async def _restart_later(self, server: SimServer) -> None:
        await asyncio.sleep(self.settings.spot_restart_seconds)
        if server.state != "interrupted":
            return
        engine_listener = await Listener.open(server.handle, self.settings.host, server.port or 0)
        dcgm_listener = None
        if server.dcgm_port is not None:
            dcgm_listener = await Listener.open(server.dcgm, self.settings.host, server.dcgm_port)
        self._listeners[server.name] = (engine_listener, dcgm_listener)
        server.restart()

    # --- views -------------------------------------------------------------------------

    def endpoint(self, server: SimServer) -> str:
        return f"http://{self.settings.host}:{server.port}"

    def describe(self) -> dict[str, Any]:
        host = self.settings.host
        return {
            "sandbox": True,
            "notice": SANDBOX_NOTICE,
            "control": f"http://{host}:{self.control.port}" if self.control else None,
            "started_at": self.started_at,
            "deployments": [
                {
                    "name": name,
                    "model": d.model,
                    "engine": d.engine,
                    "gpu": d.gpu,
                    "replicas": len(self.servers[name]),
                    "market": d.market,
                    "stateless": d.stateless,
                    "provider": d.provider,
                    "tenant": d.tenant,
                    "note": d.note,
                    "load": d.load.model_dump(mode="json"),
                    "servers": [
                        {
                            "name": s.name,
                            "state": s.state,
                            "config_id": s.config_id,
                            "url": self.endpoint(s),
                            "metrics_url": f"{self.endpoint(s)}/metrics",
                            "dcgm_url": (
                                f"http://{host}:{s.dcgm_port}/metrics" if s.dcgm_port else None
                            ),
                        }
                        for s in self.servers[name]
                    ],
                }
                for name, d in self.deployments.items()
            ],
        }

    def inventory(self) -> list[dict[str, Any]]:
        rows = []
        for servers in self.servers.values():
            for s in servers:
                price = server_price(s.spec)
                rows.append(
                    {
                        "sandbox": True,
                        "instance_id": s.name,
                        "deployment": s.identity.deployment,
                        "provider": s.spec.provider,
                        "tenant": s.spec.tenant,
                        "cloud": s.spec.cloud,
                        "region": s.spec.region,
                        "instance_type": price.instance_type,
                        "gpu": gpu_spec(s.spec.gpu).name,
                        "gpu_count": s.spec.engine_args.gpus,
                        "market": s.spec.market,
                        "price_usd_per_hour": price.usd_per_hour,
                        "price_source": price.source,
                        "price_note": price.note,
                        "stateless": s.spec.stateless,
                        "state": s.state,
                        "started_at": s.started_at,
                        "model": s.spec.model,
                        "engine": s.spec.engine,
                        "url": self.endpoint(s),
                    }
                )
        return rows

    def truth(self, window: float | None) -> dict[str, Any]:
        out: dict[str, Any] = {"sandbox": True, "deployments": {}}
        for name, servers in self.servers.items():
            out["deployments"][name] = {
                s.name: {
                    **s.engine.truth.summary(s.now(), window),
                    "config_id": s.config_id,
                    "quality": s.quality_truth.summary(),
                }
                for s in servers
            }
        return out

    # --- control API -------------------------------------------------------------------

    async def _control(self, request: Request) -> Response:
        path, method = request.path.rstrip("/"), request.method
        if path == "/sandbox" and method == "GET":
            return Response.json(self.describe())
        if path == "/sandbox/inventory" and method == "GET":
            return Response.json({"sandbox": True, "instances": self.inventory()})
        if path == "/sandbox/load" and method == "GET":
            return Response.json(
                {"sandbox": True, "deployments": {n: st.summary() for n, st in self.loads.items()}}
            )
        if path == "/sandbox/truth" and method == "GET":
            return Response.json(self.truth(request.seconds("window")))
        parts = path.split("/")
        if len(parts) == 4 and parts[:3] == ["", "sandbox", "deployments"] and method == "PATCH":
            return Response.json(await self.change_deployment(parts[3], request.json()))
        if (
            len(parts) == 5
            and parts[:3] == ["", "sandbox", "servers"]
            and parts[4] == "interrupt"
            and method == "POST"
        ):
            server = self.server(parts[3])
            await self.interrupt(server)
            return Response.json({"sandbox": True, "interrupted": server.name})
        raise HTTPError(404, f"no route {method} {path} on the sandbox control API")

    def server(self, name: str) -> SimServer:
        for servers in self.servers.values():
            for s in servers:
                if s.name == name:
                    return s
        raise HTTPError(404, f"no sandbox server named {name!r}")

    async def change_deployment(self, name: str, changes: Any) -> dict[str, Any]:
        """Apply changes to every replica of a deployment; ``replicas`` scales it."""
        if name not in self.deployments:
            raise HTTPError(404, f"no deployment {name!r}; known: {sorted(self.deployments)}")
        if not isinstance(changes, dict):
            raise HTTPError(400, "the body must be a JSON object of changes")
        changes = dict(changes)
        replicas = changes.pop("replicas", None)
        if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
            raise HTTPError(400, "replicas must be a non-negative integer")
        d = self.deployments[name]
        if changes:
            d = changed_spec(d, changes, extra_keys={"replicas"})
            for server in self.servers[name]:
                server.apply(changed_spec(server.spec, _changeable(d)))
            self.deployments[name] = d
        if replicas is not None:
            while len(self.servers[name]) < replicas:
                await self._add_server(d)
            gc.freeze()  # the new servers are long-lived: keep them out of GC passes
            while len(self.servers[name]) > replicas:
                await self._remove_server(self.servers[name][-1])
            generator = self._generators.get(name)
            if generator is not None:
                generator.set_base_urls([self.endpoint(s) for s in self.servers[name]])
        return self.describe()


def _changeable(d: DeploymentSpec) -> dict[str, Any]:
    """A deployment's changeable fields, as changes to apply to each of its replicas."""
    return {k: v for k, v in d.model_dump().items() if k in CHANGEABLE}
