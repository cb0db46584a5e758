"""The :class:`Actuator` protocol (DESIGN.md, "Providers"): apply a change to a fraction
of a deployment, read back what runs, revert to a stored baseline.

**Async**, like the collection protocol: the sandbox and webhook actuators are httpx
clients, a rollout step may act on several deployments at once with ``asyncio.gather``,
and a Prefect task can be ``async def``. The Kubernetes client is synchronous; its
actuator runs each call in a worker thread (``asyncio.to_thread``).

The life of a rollout, as the rollout flow drives it::

    baseline = await actuator.snapshot(target)      # store baseline.model_dump_json()
    for fraction in (0.1, 0.5, 1.0):
        status = await actuator.apply(target, change, fraction, baseline)
        ...                                          # bake, canary analysis
    await actuator.promote(target, change, baseline)  # or, on failure:
    await actuator.revert(target, baseline)

Every call is **idempotent**: ``apply`` states the whole desired split (not a delta), so
repeating a step changes nothing (``status.changed == 0``), and reverting twice is
harmless. What an actuator cannot change is declared as data (:attr:`Actuator.changes`
and :attr:`Actuator.unsupported`) and checked in one place, :meth:`Actuator.check`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from optiinfra.errors import ConfigError, ConfigIssue
from providers.actuation.errors import UnsupportedChange
from providers.actuation.records import ActuationStatus, Baseline, Change, RunningState, Target

#: Why no deployment actuator applies these keys, unless an actuator says otherwise.
DEFAULT_UNSUPPORTED: dict[str, str] = {
    "replicas_by_hour": "an hour-of-day schedule is a standing autoscaling policy, not a "
    "one-off change: configure it in the platform's scheduler (e.g. a KEDA cron scaler)",
    "commitment": "a reserved-capacity commitment is a purchase made with the cloud "
    "provider, not a change to a running deployment",
}

#: Keys that describe a change without being applied themselves (context for a person).
INFORMATIONAL = frozenset({"from_replicas", "keep_on_demand", "count", "term_months"})


class Actuator(ABC):
    """Base of every actuator. Subclasses set ``kind``, ``changes`` and ``Options``."""

    kind: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    #: Change keys this actuator applies (``Change.as_dict()`` keys).
    changes: ClassVar[frozenset[str]] = frozenset()
    #: Change keys it refuses, with the reason (merged with :data:`DEFAULT_UNSUPPORTED`).
    unsupported: ClassVar[dict[str, str]] = {}
    #: Pass every change on (the webhook: the user's endpoint decides what it accepts).
    accepts_any_change: ClassVar[bool] = False
    #: The ``options:`` model of its configuration entry.
    Options: ClassVar[type[BaseModel]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.accepts_any_change:
            return
        defaults = {k: r for k, r in DEFAULT_UNSUPPORTED.items() if k not in cls.changes}
        cls.unsupported = {**defaults, **cls.unsupported}

    @classmethod
    def parse_options(cls, options: dict[str, Any], *, where: str) -> Any:
        """Validate ``options``; each problem is a :class:`ConfigError` issue under ``where``
        (e.g. ``providers.lab.actuator.options``)."""
        try:
            return cls.Options.model_validate(options)
        except ValidationError as exc:
            raise ConfigError(
                [
                    ConfigIssue(
                        file="providers.yaml",
                        line=None,
                        field=f"{where}." + ".".join(str(p) for p in err["loc"]),
                        message=err["msg"],
                    )
                    for err in exc.errors()
                ]
            ) from None

    @classmethod
    def check(cls, change: Change, target: Target) -> None:
        """Refuse a change with any key this actuator cannot apply, naming each and why."""
        if cls.accepts_any_change:
            return
        problems = []
        for key in sorted(change.keys() - INFORMATIONAL):
            if key in cls.changes:
                continue
            reason = cls.unsupported.get(key, "not a change this actuator knows how to apply")
            problems.append(f"{key}: {reason}")
        if problems:
            raise UnsupportedChange(
                f"the {cls.kind} actuator cannot apply " + "; ".join(problems),
                deployment=str(target),
            )

    @abstractmethod
    async def snapshot(self, target: Target) -> Baseline:
        """What runs now, as the baseline to return to (store it before the first step)."""

    @abstractmethod
    async def apply(
        self, target: Target, change: Change, fraction: float, baseline: Baseline
    ) -> ActuationStatus:
        """Make exactly ``fraction`` (0-1) of the deployment run ``change`` and the rest
        the ``baseline``; read back and report. Repeating a call changes nothing."""

    @abstractmethod
    async def read_back(self, target: Target, baseline: Baseline | None = None) -> RunningState:
        """What runs now, per variant (configuration, replicas, share). With a baseline the
        variants are labelled baseline / canary where the provider cannot tell itself."""

    @abstractmethod
    async def revert(self, target: Target, baseline: Baseline) -> ActuationStatus:
        """Run the baseline everywhere again and verify it by reading back; harmless twice."""

    @abstractmethod
    async def promote(self, target: Target, change: Change, baseline: Baseline) -> ActuationStatus:
        """After a successful 100 % step: make the change the deployment's own
        configuration, so the next rollout's snapshot starts from it."""

    async def aclose(self) -> None:  # noqa: B027  (a hook; most actuators hold nothing)
        """Release clients the actuator opened itself (not injected ones)."""

    async def __aenter__(self) -> Actuator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def check_fraction(fraction: float) -> float:
    if not 0.0 <= fraction <= 1.0 or math.isnan(fraction):
        raise ValueError(f"fraction must be within 0 and 1, got {fraction}")
    return float(fraction)


def canary_count(fraction: float, total: int) -> int:
    """Replicas that run the change at ``fraction`` of ``total``: ``ceil(f x total)``, so a
    10 % step on a small deployment still moves one replica (0 only at 0 %)."""
    return min(total, math.ceil(round(fraction * total, 9)))


def scaled_total(fraction: float, before: int, after: int) -> int:
    """The replica count at ``fraction`` of a move from ``before`` to ``after`` replicas,
    rounding the moved part up (the move shows at the first step)."""
    moved = canary_count(fraction, abs(after - before))
    return before + moved if after >= before else before - moved
