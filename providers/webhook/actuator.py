"""The ``webhook`` actuator: POSTs each step to the user's endpoint, reads its status back.

For platforms OptiInfra does not drive itself (a gateway with weighted routing, Argo
Rollouts, Flagger, Spinnaker, an in-house CD system), each step is one JSON request to
the user's URL, and what runs is whatever that system reports.

Wire format, version 1 (docs/actuators.md has examples):

* ``POST <url>`` with ``Content-Type: application/json``, ``Idempotency-Key: <key>`` and,
  when a token is configured, ``Authorization: Bearer <token>``; the body is
  :class:`WebhookRequest`: ``version``, ``action`` (apply / revert / promote),
  ``idempotency_key``, ``target`` {tenant, provider, deployment}, ``deployment``,
  ``change``, ``percent`` (0-100), ``baseline`` (the stored snapshot, on revert) and
  ``sent_at``. The same step always carries the same key, so the endpoint can answer a
  repeat without acting twice. Any 2xx is accepted.
* ``GET <status_url>?tenant=&provider=&deployment=`` (``status_url`` defaults to
  ``url``) answers :class:`WebhookStatus`: ``deployment``, ``percent`` now running the
  change, ``state`` (pending / progressing / done / failed), ``message``, and optionally
  ``variants`` [{name, role, replicas, ready_replicas, config}].

The token is read from the environment variable named by ``credentials.token``, sent only
in the header, and never logged or put in an error (an answer that echoes it is masked).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, ValidationError

from optiinfra.secrets import read_secret
from providers.actuation.base import Actuator, check_fraction
from providers.actuation.errors import ActuationError
from providers.actuation.http import HttpSession, in_session
from providers.actuation.records import (
    Action,
    ActuationStatus,
    Baseline,
    Change,
    RunningState,
    Target,
    Variant,
    step_key,
)
from providers.actuation.registry import register_actuator

log = logging.getLogger(__name__)
WIRE_VERSION = 1


class WebhookActuatorOptions(BaseModel):
    """``options:`` of a ``webhook`` actuator (the token: ``credentials: {token: ENV}``)."""

    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl = Field(description="Where each step is POSTed.")
    status_url: AnyHttpUrl | None = Field(
        default=None, description="Where the status is read (GET); default `url`."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per request.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers (not secrets: use credentials.token)."
    )
    verify_tls: bool = Field(default=True, description="Check the endpoint's certificate.")


class WebhookRequest(BaseModel):
    """The JSON body of every POST."""

    version: int = WIRE_VERSION
    action: Action
    idempotency_key: str
    target: Target
    deployment: str
    change: dict[str, Any] | None
    percent: float = Field(ge=0, le=100)
    baseline: dict[str, Any] | None = None
    sent_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class WebhookVariant(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    role: Literal["baseline", "canary", "unknown"] = "unknown"
    replicas: int = Field(default=0, ge=0)
    ready_replicas: int | None = Field(default=None, ge=0)
    config: dict[str, Any] = Field(default_factory=dict)


class WebhookStatus(BaseModel):
    """The JSON the status URL answers (unknown fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    deployment: str
    percent: float = Field(ge=0, le=100, description="Share running the change now, in %.")
    state: Literal["pending", "progressing", "done", "failed"] = "done"
    message: str = ""
    idempotency_key: str | None = None
    variants: list[WebhookVariant] = Field(default_factory=list)


@register_actuator
class WebhookActuator(Actuator):
    """Sends each step to the user's endpoint (their gateway or CD system) over HTTP."""

    kind = "webhook"
    description = "POST each step to the user's endpoint; GET its status back"
    accepts_any_change = True  # the user's endpoint decides; its 4xx answer says why not
    Options = WebhookActuatorOptions

    def __init__(
        self,
        options: WebhookActuatorOptions,
        *,
        credentials: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.options = options
        self.url = str(options.url)
        self.status_url = str(options.status_url or options.url)
        credentials = credentials or {}
        self._token: SecretStr | None = (
            read_secret(credentials["token"], what=f"webhook actuator {self.url} token")
            if "token" in credentials
            else None
        )
        self.http = HttpSession(client, verify=options.verify_tls)

    def _headers(self, key: str | None = None) -> dict[str, str]:
        headers = {**self.options.headers, "Accept": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        return headers

    def _mask(self, text: str) -> str:
        if self._token is not None:
            text = text.replace(self._token.get_secret_value(), "***")
        return text

    async def _request(
        self, method: str, url: str, target: Target, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await self.http.client.request(
                method, url, timeout=self.options.timeout_seconds, **kwargs
            )
        except httpx.TimeoutException:
            raise ActuationError(
                f"webhook {method} timed out after {self.options.timeout_seconds:g} s",
                endpoint=url,
                deployment=str(target),
            ) from None
        except httpx.HTTPError as exc:
            raise ActuationError(
                f"webhook {method} failed: {type(exc).__name__}: {self._mask(str(exc))[:200]}",
                endpoint=url,
                deployment=str(target),
            ) from None
        if not response.is_success:
            raise ActuationError(
                f"webhook {method} answered HTTP {response.status_code}: "
                f"{self._mask(response.text)[:300]}",
                endpoint=url,
                deployment=str(target),
            )
        return response

    async def _status(self, target: Target) -> WebhookStatus:
        params = {"tenant": target.tenant, "provider": target.provider,
                  "deployment": target.deployment}  # fmt: skip
        response = await self._request(
            "GET", self.status_url, target, params=params, headers=self._headers()
        )
        try:
            status = WebhookStatus.model_validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(body)"
            raise ActuationError(
                f"webhook status answer is not a status document: {where}: {first['msg']}",
                endpoint=self.status_url,
                deployment=str(target),
            ) from None
        if status.deployment != target.deployment:
            raise ActuationError(
                f"webhook status is about deployment {status.deployment!r}, not the one asked",
                endpoint=self.status_url,
                deployment=str(target),
            )
        if status.state == "failed":
            raise ActuationError(
                f"the webhook reports the step failed: {self._mask(status.message)[:300]}",
                endpoint=self.status_url,
                deployment=str(target),
            )
        return status

    def _running(self, target: Target, status: WebhookStatus) -> RunningState:
        share = status.percent / 100
        if status.variants:
            total = sum(v.replicas for v in status.variants)
            variants = [
                Variant(
                    name=v.name,
                    role=v.role,
                    config=v.config,
                    replicas=v.replicas,
                    ready_replicas=v.replicas if v.ready_replicas is None else v.ready_replicas,
                    share=v.replicas / total if total else (share if v.role == "canary" else 0),
                )
                for v in status.variants
            ]
        else:  # the endpoint reports only the percentage: two variants by share
            variants = [Variant(name="baseline", role="baseline", share=1 - share)]
            if share > 0:
                variants.append(Variant(name="canary", role="canary", share=share))
        return RunningState(target=target, kind=self.kind, variants=variants, detail=status.message)

    async def _step(
        self,
        action: Action,
        target: Target,
        change: Change | None,
        fraction: float,
        baseline: Baseline | None,
    ) -> ActuationStatus:
        key = step_key(action, target, change, fraction)
        percent = round(fraction * 100, 4)
        body = WebhookRequest(
            action=action,
            idempotency_key=key,
            target=target,
            deployment=target.deployment,
            change=change.as_dict() if change is not None else None,
            percent=percent,
            baseline=baseline.model_dump(mode="json") if baseline is not None else None,
        )
        log.info("webhook %s %s %s%% -> %s", action, target, percent, self.url)
        await self._request(
            "POST", self.url, target,
            content=body.model_dump_json(), headers={**self._headers(key),
                                                     "Content-Type": "application/json"},
        )  # fmt: skip
        status = await self._status(target)
        running = self._running(target, status)
        done = status.state == "done" and abs(status.percent - percent) < 1e-6
        return ActuationStatus(
            target=target,
            kind=self.kind,
            action=action,
            fraction=fraction,
            achieved_fraction=status.percent / 100,
            changed=1,
            done=done,
            idempotency_key=key,
            detail=f"webhook state {status.state}"
            + (f": {status.message}" if status.message else ""),
            running=running,
        )

    # --- the protocol --------------------------------------------------------------------

    @in_session
    async def snapshot(self, target: Target) -> Baseline:
        status = await self._status(target)
        base = next((v for v in status.variants if v.role == "baseline"), None)
        return Baseline(
            target=target,
            kind=self.kind,
            replicas=sum(v.replicas for v in status.variants),
            config=base.config if base is not None else {},
            data={"status": status.model_dump(mode="json")},
        )

    @in_session
    async def apply(
        self, target: Target, change: Change, fraction: float, baseline: Baseline
    ) -> ActuationStatus:
        return await self._step("apply", target, change, check_fraction(fraction), None)

    @in_session
    async def read_back(self, target: Target, baseline: Baseline | None = None) -> RunningState:
        return self._running(target, await self._status(target))

    @in_session
    async def revert(self, target: Target, baseline: Baseline) -> ActuationStatus:
        return await self._step("revert", target, None, 0.0, baseline)

    @in_session
    async def promote(self, target: Target, change: Change, baseline: Baseline) -> ActuationStatus:
        return await self._step("promote", target, change, 1.0, None)
