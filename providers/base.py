"""The one base every provider adapter stands on.

An adapter declares what it can do as data (:attr:`Provider.features`) and why it cannot
do the rest (:attr:`Provider.unsupported`), so flows ask :meth:`Provider.supports` in one
place instead of catching ``NotImplementedError`` all over. Adapters receive their
configuration and any external client (HTTP transport, SDK session, NVML handle)
through the constructor, so tests inject local stand-ins rather than patching SDKs.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

import pandas as pd
from pydantic import BaseModel, ValidationError

from optiinfra.config import ProviderConfig
from optiinfra.errors import ConfigError, ConfigIssue


class Feature(StrEnum):
    """What a provider adapter can do (DESIGN.md, "Providers")."""

    METRICS = "metrics"  # MetricsSource: performance and resource samples
    COST = "cost"  # CostSource: spend to date and prices
    INVENTORY = "inventory"  # InventorySource: instances, nodes, pods
    ACTUATE = "actuate"  # Actuator: apply/revert a change on a fraction of a deployment
    QUALITY = "quality"  # QualitySource: scored answers (golden-set probes, sampled traffic)


#: Why an adapter lacks a feature when it does not say itself. Answer quality is measured
#: by asking deployments questions, which only the ``quality`` kind does, so no other
#: adapter has to repeat that reason.
DEFAULT_UNSUPPORTED: dict[Feature, str] = {
    Feature.QUALITY: "answer quality is collected by a provider of kind quality "
    "(golden-set probes and sampled interactions), not by this adapter",
}


@dataclass(frozen=True)
class CollectionContext:
    """What one collection run asks of a provider: the window and who it is for."""

    start: datetime
    end: datetime
    tenant: str = "default"
    extra: dict[str, Any] = field(default_factory=dict)


class UnsupportedFeature(Exception):
    """Raised by :meth:`Provider.require` with the adapter's own reason."""


class Provider(ABC):
    """Base of every adapter. Subclasses set ``kind``, ``features`` and ``unsupported``.

    Collection methods return frames with exactly the columns of the matching record in
    :mod:`optiinfra.models` (``Sample.COLUMNS`` and so on).
    """

    kind: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    features: ClassVar[frozenset[Feature]] = frozenset()
    unsupported: ClassVar[dict[Feature, str]] = {}

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        #: Remarks from the last collection a user should see (``"no NVIDIA GPU found
        #: (driver not loaded)"``): not errors, since the rest of the data is fine.
        self.notes: list[str] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        defaults = {f: r for f, r in DEFAULT_UNSUPPORTED.items() if f not in cls.features}
        cls.unsupported = {**defaults, **cls.unsupported}

    @property
    def name(self) -> str:
        return self.config.name

    @classmethod
    def supports(cls, feature: Feature) -> bool:
        return feature in cls.features

    @classmethod
    def require(cls, feature: Feature) -> None:
        if feature not in cls.features:
            reason = cls.unsupported.get(feature, "not implemented by this adapter")
            raise UnsupportedFeature(f"provider kind {cls.kind!r} cannot {feature.value}: {reason}")

    async def collect_metrics(self, ctx: CollectionContext) -> pd.DataFrame:
        """Samples for ``ctx``'s window (columns ``Sample.COLUMNS``)."""
        self.require(Feature.METRICS)
        raise AssertionError("unreachable: a METRICS provider must override collect_metrics")

    async def collect_inventory(self, ctx: CollectionContext) -> pd.DataFrame:
        """Instances seen now (columns ``Instance.COLUMNS``)."""
        self.require(Feature.INVENTORY)
        raise AssertionError("unreachable: an INVENTORY provider must override this")

    async def collect_costs(self, ctx: CollectionContext) -> pd.DataFrame:
        """Cost records overlapping the window (columns ``CostRecord.COLUMNS``)."""
        self.require(Feature.COST)
        raise AssertionError("unreachable: a COST provider must override this")

    async def collect_quality(self, ctx: CollectionContext) -> pd.DataFrame:
        """Scored answers for ``ctx``'s window (columns ``QualityEvent.COLUMNS``)."""
        self.require(Feature.QUALITY)
        raise AssertionError("unreachable: a QUALITY provider must override this")

    async def aclose(self) -> None:  # noqa: B027  (a hook; most adapters hold nothing)
        """Release clients the adapter opened itself (not injected ones)."""


_Options = TypeVar("_Options", bound=BaseModel)


def parse_options(config: ProviderConfig, model: type[_Options]) -> _Options:
    """Validate a provider entry's ``options`` against the adapter's options model; every
    problem becomes one :class:`ConfigError` issue naming ``providers.<name>.options.<field>``."""
    try:
        return model.model_validate(config.options)
    except ValidationError as exc:
        raise ConfigError(
            [
                ConfigIssue(
                    file="providers.yaml",
                    line=None,
                    field=f"providers.{config.name}.options."
                    + ".".join(str(p) for p in err["loc"]),
                    message=err["msg"],
                )
                for err in exc.errors()
            ]
        ) from None
