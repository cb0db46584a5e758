"""What one sandbox server costs per hour: the public price of the cheapest instance of
its cloud and region with enough GPUs of its type, on its market.

A server rents a whole instance, so a one-GPU model on an eight-GPU instance pays for
eight (that mismatch is one of the things a cost agent should notice).
"""

from __future__ import annotations

from optiinfra.catalog.prices import PriceQuote, quote
from optiinfra.sandbox.spec import DeploymentSpec


def server_price(spec: DeploymentSpec) -> PriceQuote:
    """The price quote of one replica of ``spec`` (raises CatalogError when none exists)."""
    return quote(spec.gpu, spec.engine_args.gpus, spec.cloud, spec.region, spec.market)
