"""Public reference data: GPU specifications, model architectures and cloud GPU prices.

These tables are facts copied from public sources (named in ``data/SOURCES.md`` and in
each table's ``source`` column), loaded by small functions and handed to decision code
as plain records or frames. Both the sandbox fleet and the agents' capacity model read
them; neither reads the other's formulas.
"""

from optiinfra.catalog._tables import CatalogError
from optiinfra.catalog.gpus import GpuSpec, gpu_spec, gpu_specs
from optiinfra.catalog.llms import ModelSpec, model_spec, model_specs
from optiinfra.catalog.prices import PriceQuote, price_table, quote

__all__ = [
    "CatalogError",
    "GpuSpec",
    "ModelSpec",
    "PriceQuote",
    "gpu_spec",
    "gpu_specs",
    "model_spec",
    "model_specs",
    "price_table",
    "quote",
]
