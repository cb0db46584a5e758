"""Model architectures (parameters, layers, attention shape) for sizing weights and KV cache.

Example::

    >>> spec = model_spec("meta-llama/Meta-Llama-3-8B")
    >>> spec.kv_bytes_per_token(2)   # 32 layers x 2 (K, V) x 8 heads x 128 x 2 bytes
    131072
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from optiinfra.catalog._tables import CatalogError, normalise_key, read_rows, required

_FILE = "models.csv"


@dataclass(frozen=True)
class ModelSpec:
    """The shape of a decoder-only transformer, as its published config states it."""

    name: str
    params_b: float  # all parameters, billions (what the weights occupy)
    active_params_b: float  # parameters used per token (differs for mixture-of-experts)
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    max_context: int
    source: str

    def weight_bytes(self, bytes_per_param: float) -> float:
        return self.params_b * 1e9 * bytes_per_param

    def kv_bytes_per_token(self, bytes_per_value: float) -> int:
        """KV-cache bytes one token occupies across all layers (keys and values)."""
        return int(2 * self.layers * self.kv_heads * self.head_dim * bytes_per_value)


@cache
def _table() -> tuple[dict[str, ModelSpec], dict[str, str]]:
    specs: dict[str, ModelSpec] = {}
    keys: dict[str, str] = {}
    for line, row in read_rows(_FILE):
        spec = ModelSpec(
            name=row["model"],
            params_b=required(_FILE, line, row, "params_b"),
            active_params_b=required(_FILE, line, row, "active_params_b"),
            layers=int(required(_FILE, line, row, "layers")),
            hidden_size=int(required(_FILE, line, row, "hidden_size")),
            attention_heads=int(required(_FILE, line, row, "attention_heads")),
            kv_heads=int(required(_FILE, line, row, "kv_heads")),
            head_dim=int(required(_FILE, line, row, "head_dim")),
            vocab_size=int(required(_FILE, line, row, "vocab_size")),
            max_context=int(required(_FILE, line, row, "max_context")),
            source=row["source"],
        )
        specs[spec.name] = spec
        for key in [spec.name, *filter(None, row["aliases"].split(";"))]:
            keys[normalise_key(key)] = spec.name
    return specs, keys


def model_specs() -> dict[str, ModelSpec]:
    """Every model in the table, by its Hugging Face name."""
    return dict(_table()[0])


def model_spec(name: str) -> ModelSpec:
    """A model by Hugging Face name or alias (case and punctuation ignored)."""
    specs, keys = _table()
    found = keys.get(normalise_key(name))
    if found is None:
        raise CatalogError(f"unknown model {name!r}; known: {', '.join(sorted(specs))}")
    return specs[found]
