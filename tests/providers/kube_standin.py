"""A local HTTP server that speaks the Kubernetes API's wire format for apps/v1
Deployments: the calls the kubernetes actuator makes, as an API server answers them.

``GET``/``POST``/``PUT``/``PATCH``/``DELETE`` on
``/apis/apps/v1/namespaces/{ns}/deployments[/{name}]`` with the API server's JSON:
``metadata.uid``/``resourceVersion``/``generation``/``creationTimestamp`` set on write,
defaults filled in (``revisionHistoryLimit``, ``strategy``, ``imagePullPolicy``, ...),
``Status`` objects for errors (404 NotFound, 409 AlreadyExists / Conflict on a stale
``resourceVersion``, 422 Invalid when the selector does not match the template's labels
or changes on update, 415 for an unsupported patch type, 400 for a JSON patch that is not
a list). ``PATCH`` applies RFC 7386 merge patches (and strategic merge patches, which are
the same for the maps the actuator patches). A "controller" makes ``status`` follow
``spec`` at once, unless ``ready`` is False (then no replica becomes ready).
Every request is recorded for assertions (method, path, content type, authorization).
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/apis/apps/v1/namespaces/"


@dataclass
class Seen:
    method: str
    path: str
    content_type: str
    authorization: str | None
    body: Any


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _status(code: int, reason: str, message: str, name: str = "") -> dict[str, Any]:
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason,
        "details": {"name": name, "group": "apps", "kind": "deployments"}, "code": code,
    }  # fmt: skip


def _defaults(obj: dict[str, Any]) -> None:
    """Fill what an API server defaults, so the client sees what a real one returns."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    spec.setdefault(
        "strategy",
        {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
    )
    pod = spec.setdefault("template", {}).setdefault("spec", {})
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("schedulerName", "default-scheduler")
    for c in pod.get("containers", []):
        c.setdefault("imagePullPolicy", "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")


class KubeState:
    def __init__(self, token: str | None) -> None:
        self.token = token
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.seen: list[Seen] = []
        self.ready = True
        self.version = 100
        self.lock = threading.Lock()

    def next_version(self) -> str:
        self.version += 1
        return str(self.version)

    def settle(self, obj: dict[str, Any]) -> None:
        """The deployment controller's part: status follows spec."""
        n = int(obj["spec"].get("replicas", 1))
        ready = n if self.ready else 0
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"], "replicas": n,
            "updatedReplicas": n, "readyReplicas": ready, "availableReplicas": ready,
            "conditions": [{"type": "Available", "status": "True" if ready == n else "False",
                            "reason": "MinimumReplicasAvailable",
                            "message": "Deployment has minimum availability."}],
        }  # fmt: skip
        if ready == 0:  # an API server leaves out zero counts
            obj["status"].pop("readyReplicas")
            obj["status"].pop("availableReplicas")

    def put(self, ns: str, obj: dict[str, Any], *, old: dict[str, Any] | None) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = ns
        meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        meta["creationTimestamp"] = (
            old["metadata"]["creationTimestamp"] if old else "2026-11-20T10:00:00Z"
        )
        meta["resourceVersion"] = self.next_version()
        _defaults(obj)
        generation = old["metadata"]["generation"] if old else 0
        if old is None or old["spec"] != obj["spec"]:
            generation += 1
        meta["generation"] = generation
        obj["apiVersion"], obj["kind"] = "apps/v1", "Deployment"
        obj.pop("status", None)
        self.settle(obj)
        self.objects[(ns, meta["name"])] = obj
        return obj

    def add(self, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return self.put(ns, copy.deepcopy(obj), old=None)

    def get(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((ns, name))


def _invalid(obj: dict[str, Any]) -> str | None:
    spec = obj.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector:
        return "spec.selector: Required value"
    if any(labels.get(k) != v for k, v in selector.items()):
        return (
            "spec.template.metadata.labels: Invalid value: `selector` does not match "
            "template `labels`"
        )
    if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
        return "spec.template.spec.containers: Required value"
    return None


def handler(state: KubeState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> None:
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            ctype = (self.headers.get("Content-Type") or "").split(";")[0]
            auth = self.headers.get("Authorization")
            state.seen.append(Seen(self.command, path, ctype, auth, body))
            if state.token is not None and auth != f"Bearer {state.token}":
                self._send(401, _status(401, "Unauthorized", "Unauthorized"))
                return
            if not path.startswith(PREFIX):
                self._send(404, _status(404, "NotFound", "the server could not find the resource"))
                return
            parts = path[len(PREFIX) :].split("/")
            if len(parts) < 2 or parts[1] != "deployments" or len(parts) > 3:
                self._send(404, _status(404, "NotFound", "the server could not find the resource"))
                return
            ns, name = parts[0], (parts[2] if len(parts) == 3 else None)
            with state.lock:
                code, answer = self._handle(ns, name, body, ctype)
            self._send(code, answer)

        def _handle(
            self, ns: str, name: str | None, body: Any, ctype: str
        ) -> tuple[int, dict[str, Any]]:
            method = self.command
            if name is None:
                if method != "POST":
                    return 405, _status(405, "MethodNotAllowed", "list is not served here")
                new = body.get("metadata", {}).get("name", "")
                if state.get(ns, new) is not None:
                    msg = f'deployments.apps "{new}" already exists'
                    return 409, _status(409, "AlreadyExists", msg, new)
                problem = _invalid(body)
                if problem:
                    msg = f'Deployment.apps "{new}" is invalid: {problem}'
                    return 422, _status(422, "Invalid", msg, new)
                return 201, state.put(ns, copy.deepcopy(body), old=None)
            old = state.get(ns, name)
            if old is None:
                return 404, _status(404, "NotFound", f'deployments.apps "{name}" not found', name)
            if method == "GET":
                return 200, old
            if method == "DELETE":
                del state.objects[(ns, name)]
                ok = {"kind": "Status", "apiVersion": "v1", "status": "Success",
                      "details": {"name": name, "group": "apps", "kind": "deployments",
                                  "uid": old["metadata"]["uid"]}}  # fmt: skip
                return 200, ok
            if method == "PUT":
                new = copy.deepcopy(body)
                version = new.get("metadata", {}).get("resourceVersion")
                if version and version != old["metadata"]["resourceVersion"]:
                    msg = (f'Operation cannot be fulfilled on deployments.apps "{name}": the '
                           "object has been modified; please apply your changes to the latest "
                           "version and try again")  # fmt: skip
                    return 409, _status(409, "Conflict", msg, name)
            elif method == "PATCH":
                if ctype == "application/json-patch+json":
                    if not isinstance(body, list):
                        msg = "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                        return 400, _status(400, "BadRequest", msg, name)
                    return 415, _status(415, "UnsupportedMediaType", "not served here", name)
                if ctype not in (
                    "application/merge-patch+json",
                    "application/strategic-merge-patch+json",
                ):
                    return 415, _status(415, "UnsupportedMediaType", f"{ctype}", name)
                new = merge_patch(copy.deepcopy(old), body)
            else:
                return 405, _status(405, "MethodNotAllowed", method, name)
            if (new.get("spec") or {}).get("selector") != old["spec"].get("selector"):
                msg = f'Deployment.apps "{name}" is invalid: spec.selector: field is immutable'
                return 422, _status(422, "Invalid", msg, name)
            problem = _invalid(new)
            if problem:
                return 422, _status(
                    422, "Invalid", f'Deployment.apps "{name}" is invalid: {problem}', name
                )
            new.setdefault("metadata", {})["name"] = name
            return 200, state.put(ns, new, old=old)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _route

    return Handler


@contextmanager
def kube_standin(token: str | None = None) -> Iterator[tuple[str, KubeState]]:
    """A running stand-in API server on 127.0.0.1: (base URL, its state)."""
    state = KubeState(token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
