"""The ``kubernetes`` actuator: a canary Deployment beside the stable one, split by replicas.

For a deployment named ``<name>`` (the stable ``apps/v1`` Deployment), a change runs in a
second Deployment ``<name>-canary`` created from the stable one's pod template (as it was
in the baseline snapshot) with the change applied (:mod:`providers.kubernetes.podspec`),
and the split is moved by replica counts: at fraction ``f`` of ``n`` replicas the canary
has ``ceil(f x n)`` (or ``round``, option ``rounding``) and the stable ``n`` minus that.
The canary's pods carry the stable's labels plus ``canary_labels`` (default
``optiinfra.io/track: canary``), so a Service that selects the stable's pods sends each
replica its share of traffic; the canary's selector includes ``canary_labels`` so it
never claims the stable's pods. A ``replicas`` change moves each side by its own total
(``ceil(f x new)`` canary, ``old - ceil(f x old)`` stable); a change with only
``replicas`` scales the stable Deployment itself.

* ``revert``: scale the stable back, delete the canary, read back until both agree
  (if the change had been promoted, the stable's template is put back too).
* ``promote``: after 100 %, the stable Deployment takes the canary's template and the
  new total, and the canary is deleted: the next rollout starts from the change.

Calls: ``GET``/``POST``/``PUT``/``PATCH`` (JSON merge patch)/``DELETE`` on
``/apis/apps/v1/namespaces/{ns}/deployments[/{name}]``, made by the official
``kubernetes`` client, which is synchronous: each call runs in a worker thread. The
canary is recognised by the annotation ``optiinfra.io/change-key`` (a hash of the change
and the baseline template), never by comparing templates, which the API server fills
with defaults.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
from typing import Any, ClassVar, Literal

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from pydantic import AnyHttpUrl, ConfigDict, Field

from optiinfra.secrets import read_secret
from providers.actuation.base import Actuator, check_fraction, scaled_total
from providers.actuation.errors import ActuationError
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
from providers.kubernetes.podspec import POD_KEYS, PodMapping, apply_change, summary

CHANGE_KEY = "optiinfra.io/change-key"
CHANGE_ANNOTATION = "optiinfra.io/change"
STABLE_ANNOTATION = "optiinfra.io/stable"
MERGE_PATCH = "application/merge-patch+json"


class KubernetesActuatorOptions(PodMapping):
    """``options:`` of a ``kubernetes`` actuator: how to reach the cluster, and the
    pod-template mapping (:class:`PodMapping`)."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(default="default", description="Namespace of the Deployments.")
    kubeconfig: str | None = Field(
        default=None, description="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."
    )
    context: str | None = Field(default=None, description="kubeconfig context to use.")
    in_cluster: bool = Field(
        default=False, description="Use the pod's service account (running inside the cluster)."
    )
    host: AnyHttpUrl | None = Field(
        default=None,
        description="API server URL; with credentials.token (a bearer token) instead of a "
        "kubeconfig.",
    )
    verify_tls: bool = Field(default=True, description="Check the API server's certificate.")
    canary_suffix: str = Field(default="-canary", description="Canary Deployment = name+this.")
    canary_labels: dict[str, str] = Field(
        default_factory=lambda: {"optiinfra.io/track": "canary"},
        description="Labels that tell canary pods apart (added to its selector and pods; "
        "override a stable `track` label here).",
    )
    rounding: Literal["ceil", "round"] = Field(
        default="ceil",
        description="Canary replicas at fraction f of n: ceil(f·n) (a 10 % step on a small "
        "deployment still moves a replica) or round(f·n).",
    )
    request_timeout_seconds: float = Field(default=30.0, gt=0, description="Per API call.")


def _count(fraction: float, total: int, rounding: str) -> int:
    if rounding == "round":
        return min(total, math.floor(fraction * total + 0.5))
    return min(total, math.ceil(round(fraction * total, 9)))


def _clean_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}


@register_actuator
class KubernetesActuator(Actuator):
    """Runs a change as a canary Deployment beside the stable one (official client)."""

    kind = "kubernetes"
    aliases = ("k8s",)
    description = "a canary apps/v1 Deployment beside the stable one, split by replicas"
    changes: ClassVar[frozenset[str]] = POD_KEYS | {"replicas", "replicas_to_spot"}
    unsupported: ClassVar[dict[str, str]] = {
        "model": "the served model is part of the engine's arguments or image: give "
        "engine_args (e.g. model) or image instead",
        "engine": "another engine is another container image: give image instead",
    }
    Options = KubernetesActuatorOptions

    def __init__(
        self,
        options: KubernetesActuatorOptions,
        *,
        credentials: dict[str, str] | None = None,
        api_client: k8s.ApiClient | None = None,
    ) -> None:
        self.options = options
        self._own_client = api_client is None
        self.api_client = api_client or self._client(options, credentials or {})
        self.apps = k8s.AppsV1Api(self.api_client)
        self.endpoint = (self.api_client.configuration.host or "").rstrip("/")

    @staticmethod
    def _client(options: KubernetesActuatorOptions, credentials: dict[str, str]) -> k8s.ApiClient:
        if options.host is not None:
            configuration = k8s.Configuration(host=str(options.host).rstrip("/"))
            configuration.verify_ssl = options.verify_tls
            if "token" in credentials:
                token = read_secret(credentials["token"], what="kubernetes actuator token")
                # client 36+ looks the key up as "BearerToken", older ones as
                # "authorization", and each reads its prefix under its own name
                bearer = f"Bearer {token.get_secret_value()}"
                configuration.api_key = {"BearerToken": bearer, "authorization": bearer}
            return k8s.ApiClient(configuration)
        if options.in_cluster:
            configuration = k8s.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)
            return k8s.ApiClient(configuration)
        return k8s_config.new_client_from_config(
            config_file=options.kubeconfig, context=options.context
        )

    async def aclose(self) -> None:
        if self._own_client:
            await asyncio.to_thread(self.api_client.close)

    # --- API calls (sync client, in a thread) ------------------------------------------

    def _path(self, name: str | None = None) -> str:
        base = f"{self.endpoint}/apis/apps/v1/namespaces/{self.options.namespace}/deployments"
        return f"{base}/{name}" if name else base

    async def _call(self, what: str, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one client call; an :class:`ActuationError` naming the API path on failure
        (404 on a read gives ``None``)."""
        kwargs.setdefault("_request_timeout", self.options.request_timeout_seconds)
        try:
            result = await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 404 and what in ("read", "delete"):
                return None
            message = _api_message(exc)
            raise ActuationError(
                f"{what} Deployment {name} answered HTTP {exc.status}: {message}",
                endpoint=self._path(name),
                deployment=f"{self.options.namespace}/{name}",
            ) from None
        except Exception as exc:  # urllib3 connection errors, timeouts
            raise ActuationError(
                f"{what} Deployment {name} failed: {type(exc).__name__}: {str(exc)[:200]}",
                endpoint=self._path(name),
                deployment=f"{self.options.namespace}/{name}",
            ) from None
        return result

    async def _read(self, name: str) -> dict[str, Any] | None:
        obj = await self._call(
            "read", name, self.apps.read_namespaced_deployment, name, self.options.namespace
        )
        return None if obj is None else self.api_client.sanitize_for_serialization(obj)

    async def _scale(self, name: str, replicas: int) -> None:
        await self._call(
            "scale", name, self.apps.patch_namespaced_deployment, name, self.options.namespace,
            {"spec": {"replicas": replicas}}, _content_type=MERGE_PATCH,
        )  # fmt: skip

    async def _delete(self, name: str) -> bool:
        """Delete ``name``; whether it existed."""
        gone = await self._call(
            "delete", name, self.apps.delete_namespaced_deployment, name, self.options.namespace,
            propagation_policy="Background",
        )  # fmt: skip
        return gone is not None

    def _canary_name(self, target: Target) -> str:
        return target.deployment + self.options.canary_suffix

    async def _stable(self, target: Target) -> dict[str, Any]:
        stable = await self._read(target.deployment)
        if stable is None:
            raise ActuationError(
                "the stable Deployment does not exist",
                endpoint=self._path(target.deployment),
                deployment=f"{self.options.namespace}/{target.deployment}",
            )
        return stable

    # --- desired objects -----------------------------------------------------------------

    def _canary_body(
        self, target: Target, change: Change, baseline: Baseline, replicas: int
    ) -> dict[str, Any]:
        stable_meta = baseline.data.get("metadata", {})
        spec = copy.deepcopy(baseline.data.get("spec", {}))
        labels = self.options.canary_labels
        try:
            template = apply_change(baseline.config, change, self.options)
        except ValueError as exc:
            raise ActuationError(
                str(exc), endpoint=self._path(target.deployment), deployment=str(target)
            ) from None
        template.setdefault("metadata", {})["labels"] = {
            **(template.get("metadata", {}).get("labels") or {}), **labels
        }  # fmt: skip
        selector = copy.deepcopy(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), **labels}
        spec.update({"replicas": replicas, "selector": selector, "template": template})
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": self._canary_name(target),
                "namespace": self.options.namespace,
                "labels": {**(stable_meta.get("labels") or {}), **labels},
                "annotations": {
                    CHANGE_KEY: self._change_key(change, baseline),
                    CHANGE_ANNOTATION: json.dumps(change.as_dict(), sort_keys=True),
                    STABLE_ANNOTATION: target.deployment,
                },
            },
            "spec": spec,
        }

    @staticmethod
    def _change_key(change: Change, baseline: Baseline) -> str:
        return digest({"change": change.as_dict(), "template": baseline.config})

    # --- the protocol --------------------------------------------------------------------

    async def snapshot(self, target: Target) -> Baseline:
        stable = await self._stable(target)
        canary = await self._read(self._canary_name(target))
        if canary is not None:
            key = (canary["metadata"].get("annotations") or {}).get(CHANGE_KEY, "?")
            raise ActuationError(
                f"Deployment {self._canary_name(target)} exists from an earlier rollout "
                f"(change key {key}): revert or promote that rollout first",
                endpoint=self._path(self._canary_name(target)),
                deployment=str(target),
            )
        spec = stable.get("spec", {})
        return Baseline(
            target=target,
            kind=self.kind,
            replicas=int(spec.get("replicas", 1)),
            config=spec.get("template", {}),
            data={
                "namespace": self.options.namespace,
                "metadata": _clean_metadata(stable.get("metadata", {})),
                "spec": {k: v for k, v in spec.items() if k not in ("template", "replicas")},
                "resource_version": stable["metadata"].get("resourceVersion"),
                # set when the stable runs a change promoted by an earlier rollout
                "change_key": (stable["metadata"].get("annotations") or {}).get(CHANGE_KEY),
            },
        )

    def _split(self, change: Change, fraction: float, before: int) -> tuple[int, int]:
        """(canary, stable) replicas at ``fraction``."""
        after = before if change.replicas is None else change.replicas
        cover_after = (
            after if change.replicas_to_spot is None else min(after, change.replicas_to_spot)
        )
        cover_before = (
            before if change.replicas_to_spot is None else min(before, change.replicas_to_spot)
        )
        rounding = self.options.rounding
        canary = _count(fraction, cover_after, rounding)
        stable = before - _count(fraction, cover_before, rounding)
        if change.replicas_to_spot is not None:  # the uncovered part follows the new total
            stable += after - before
        return canary, stable

    async def apply(
        self, target: Target, change: Change, fraction: float, baseline: Baseline
    ) -> ActuationStatus:
        fraction = check_fraction(fraction)
        self.check(change, target)
        changed = 0
        stable = await self._stable(target)
        stable_replicas = int(stable.get("spec", {}).get("replicas", 0))
        if not change.keys() & POD_KEYS:  # only a replica count: scale the stable itself
            after = baseline.replicas if change.replicas is None else change.replicas
            want = scaled_total(fraction, baseline.replicas, after)
            if stable_replicas != want:
                await self._scale(target.deployment, want)
                changed += 1
            running = await self.read_back(target, baseline)
            span = abs((change.replicas or 0) - baseline.replicas)
            achieved = abs(want - baseline.replicas) / span if span else 1.0
            return self._status("apply", target, change, fraction, achieved, changed, running)
        canary_want, stable_want = self._split(change, fraction, baseline.replicas)
        name = self._canary_name(target)
        body = self._canary_body(target, change, baseline, canary_want)
        canary = await self._read(name)
        key = body["metadata"]["annotations"][CHANGE_KEY]
        # scale the canary up before the stable down, so capacity never dips
        if canary is None:
            await self._call(
                "create", name, self.apps.create_namespaced_deployment, self.options.namespace, body
            )
            changed += 1
        elif (canary["metadata"].get("annotations") or {}).get(CHANGE_KEY) != key:
            body["metadata"]["resourceVersion"] = canary["metadata"].get("resourceVersion")
            await self._call(
                "replace", name, self.apps.replace_namespaced_deployment, name,
                self.options.namespace, body,
            )  # fmt: skip
            changed += 1
        elif int(canary.get("spec", {}).get("replicas", 0)) != canary_want:
            await self._scale(name, canary_want)
            changed += 1
        if stable_replicas != stable_want:
            await self._scale(target.deployment, stable_want)
            changed += 1
        running = await self.read_back(target, baseline)
        return self._status(
            "apply", target, change, fraction, running.canary_share, changed, running
        )

    def _status(
        self,
        action: Any,
        target: Target,
        change: Change | None,
        fraction: float,
        achieved: float,
        changed: int,
        running: RunningState,
        detail: str = "",
    ) -> ActuationStatus:
        ready = all(v.ready_replicas >= v.replicas for v in running.variants)
        pending = [f"{v.name} {v.ready_replicas}/{v.replicas} ready" for v in running.variants
                   if v.ready_replicas < v.replicas]  # fmt: skip
        notes = [detail] if detail else []
        if pending:
            notes.append("waiting: " + ", ".join(pending))
        return ActuationStatus(
            target=target,
            kind=self.kind,
            action=action,
            fraction=fraction,
            achieved_fraction=min(1.0, achieved),
            changed=changed,
            done=ready and not running.detail,
            idempotency_key=step_key(action, target, change, fraction),
            detail="; ".join(notes),
            running=running,
        )

    async def read_back(self, target: Target, baseline: Baseline | None = None) -> RunningState:
        stable, canary = await asyncio.gather(
            self._stable(target), self._read(self._canary_name(target))
        )
        pairs = [("baseline", stable)] + ([("canary", canary)] if canary is not None else [])
        total = sum(int(obj.get("spec", {}).get("replicas", 0)) for _, obj in pairs)
        variants = []
        stale = []
        for role, obj in pairs:
            spec, status, meta = obj.get("spec", {}), obj.get("status") or {}, obj["metadata"]
            replicas = int(spec.get("replicas", 0))
            if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
                stale.append(meta["name"])
            template = spec.get("template", {})
            variants.append(
                Variant(
                    name=meta["name"],
                    role=role,  # type: ignore[arg-type]
                    config_id=(meta.get("annotations") or {}).get(CHANGE_KEY) or digest(template),
                    config=summary(template, self.options),
                    replicas=replicas,
                    ready_replicas=int(status.get("readyReplicas") or 0),
                    share=replicas / total if total else 0.0,
                    members=[meta["name"]],
                )
            )
        detail = f"not yet observed by the controller: {', '.join(stale)}" if stale else ""
        return RunningState(target=target, kind=self.kind, variants=variants, detail=detail)

    async def revert(self, target: Target, baseline: Baseline) -> ActuationStatus:
        changed = 0
        stable = await self._stable(target)
        annotations = stable["metadata"].get("annotations") or {}
        if annotations.get(CHANGE_KEY) != baseline.data.get("change_key"):
            # this rollout's change had been promoted: put the baseline template back
            body = copy.deepcopy(stable)
            body.pop("status", None)
            kept = {
                k: v for k, v in annotations.items() if k not in (CHANGE_KEY, CHANGE_ANNOTATION)
            }
            before = baseline.data.get("metadata", {}).get("annotations") or {}
            body["metadata"]["annotations"] = {
                **kept, **{k: v for k, v in before.items() if k in (CHANGE_KEY, CHANGE_ANNOTATION)}
            }  # fmt: skip
            body["spec"]["template"] = baseline.config
            body["spec"]["replicas"] = baseline.replicas
            await self._call(
                "replace", target.deployment, self.apps.replace_namespaced_deployment,
                target.deployment, self.options.namespace, body,
            )  # fmt: skip
            changed += 1
        elif int(stable.get("spec", {}).get("replicas", 0)) != baseline.replicas:
            await self._scale(target.deployment, baseline.replicas)
            changed += 1
        if await self._delete(self._canary_name(target)):
            changed += 1
        running = await self.read_back(target, baseline)
        if running.variant("canary") is not None:
            raise ActuationError(
                "the canary Deployment is still there after its deletion",
                endpoint=self._path(self._canary_name(target)),
                deployment=str(target),
            )
        return self._status("revert", target, None, 0.0, 0.0, changed, running)

    async def promote(self, target: Target, change: Change, baseline: Baseline) -> ActuationStatus:
        self.check(change, target)
        changed = 0
        stable = await self._stable(target)
        key = self._change_key(change, baseline)
        total = baseline.replicas if change.replicas is None else change.replicas
        annotations = stable["metadata"].get("annotations") or {}
        if change.keys() & POD_KEYS and change.replicas_to_spot is not None:
            raise ActuationError(
                "a change that covers some replicas only (replicas_to_spot) stays as a second "
                "Deployment: there is no single template to promote",
                endpoint=self._path(target.deployment),
                deployment=str(target),
            )
        if change.keys() & POD_KEYS and annotations.get(CHANGE_KEY) != key:
            body = copy.deepcopy(stable)
            body.pop("status", None)
            body["metadata"]["annotations"] = {
                **annotations, CHANGE_KEY: key,
                CHANGE_ANNOTATION: json.dumps(change.as_dict(), sort_keys=True),
            }  # fmt: skip
            body["spec"]["template"] = apply_change(baseline.config, change, self.options)
            body["spec"]["replicas"] = total
            await self._call(
                "replace", target.deployment, self.apps.replace_namespaced_deployment,
                target.deployment, self.options.namespace, body,
            )  # fmt: skip
            changed += 1
        elif int(stable.get("spec", {}).get("replicas", 0)) != total:
            await self._scale(target.deployment, total)
            changed += 1
        if await self._delete(self._canary_name(target)):
            changed += 1
        running = await self.read_back(target, baseline)
        return self._status("promote", target, change, 1.0, 1.0, changed, running)


def _api_message(exc: ApiException) -> str:
    """The API server's ``Status.message`` when it sent one, else the reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return str(exc.reason or "")
    return str(body.get("message") or exc.reason or "")[:300] if isinstance(body, dict) else ""
