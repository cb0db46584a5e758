"""Turning quality events into per-item scores: the unit every statistic here counts.

Why items, not events: a golden set is a ring of fixed questions asked again every run
at temperature 0, so over a day the same item is answered (almost) the same way dozens
of times. Counting those repeats as independent observations would make every interval
too narrow and every test too eager. So a sample is first collapsed to one score per
item (the mean of that item's answers); items are the independent units. Sampled
interactions have unique ids, so for them the collapse changes nothing.

Missing scores (``None`` / NaN: no reference, no judge grade) are dropped *before* the
collapse and counted, so callers can say how much was ignored.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

Metric = Literal["f1", "exact_match", "judge_score"]
#: The score columns of ``QualityEvent`` that these statistics read.
METRICS: tuple[str, ...] = get_args(Metric)

#: What a sample may be: quality events (a frame with ``item_id`` and the metric's
#: column), a Series of scores indexed by item id, or bare scores (no ids: no pairing).
SampleLike = pd.DataFrame | pd.Series | Sequence[float] | np.ndarray

_ANONYMOUS_CALLS = itertools.count()


@dataclass(frozen=True)
class ItemScores:
    """One score per item, with how many raw values were dropped as missing.

    ``keys`` are item ids; rows without an id (bare arrays, events with ``item_id`` "")
    get a unique positional key so they never pair with anything.
    """

    keys: np.ndarray
    values: np.ndarray
    n_nan: int
    #: Scored answers behind each item's value (1 when every item was asked once).
    counts: np.ndarray | None = None

    def answers(self) -> np.ndarray:
        """Answers per item, aligned with ``values``."""
        return self.counts if self.counts is not None else np.ones(len(self.values), dtype=int)

    @property
    def n(self) -> int:
        return len(self.values)


def check_metric(metric: str) -> Metric:
    """Fail early, naming the valid choices, on a misspelt metric."""
    if metric not in METRICS:
        raise ValueError(f"metric: {metric!r} is not one of {', '.join(METRICS)}")
    return metric  # type: ignore[return-value]


def item_scores(sample: SampleLike, metric: Metric, *, name: str = "sample") -> ItemScores:
    """Collapse ``sample`` to one score per item (see the module docstring).

    ``name`` only labels errors ("candidate f1: 2 values outside [0, 1] …").
    """
    check_metric(metric)
    if isinstance(sample, pd.DataFrame):
        if metric not in sample.columns:
            raise ValueError(f"{name}: the frame has no {metric!r} column")
        raw = pd.to_numeric(sample[metric], errors="coerce").to_numpy(dtype=float)
        if "item_id" in sample.columns:
            ids = sample["item_id"].fillna("").astype(str).to_numpy()
        else:
            ids = np.full(len(raw), "", dtype=object)
    elif isinstance(sample, pd.Series):
        raw = pd.to_numeric(sample, errors="coerce").to_numpy(dtype=float)
        ids = pd.Index(sample.index).astype(str).to_numpy()
    else:
        raw = np.asarray(
            [np.nan if v is None else v for v in np.asarray(sample, dtype=object).ravel()],
            dtype=float,
        )
        ids = np.full(len(raw), "", dtype=object)
    keep = np.isfinite(raw)
    n_nan = int((~keep).sum())
    raw, ids = raw[keep], ids[keep]
    outside = raw[(raw < 0.0) | (raw > 1.0)]
    if len(outside):
        raise ValueError(
            f"{name} {metric}: {len(outside)} values outside [0, 1] (first: {outside[0]!r});"
            " quality scores are fractions"
        )
    anonymous = ids == ""
    if anonymous.any():
        ids = ids.astype(object)
        call = next(_ANONYMOUS_CALLS)  # unique per call: anonymous rows never pair
        ids[anonymous] = [f"\x00{call}:{i}" for i in np.flatnonzero(anonymous)]
    if len(ids) == len(set(ids)):
        order = np.argsort(ids, kind="stable")
        return ItemScores(
            keys=ids[order], values=raw[order], n_nan=n_nan, counts=np.ones(len(raw), dtype=int)
        )
    grouped = pd.Series(raw).groupby(ids, sort=True)
    means, sizes = grouped.mean(), grouped.size()
    return ItemScores(
        keys=means.index.to_numpy(),
        values=means.to_numpy(dtype=float),
        n_nan=n_nan,
        counts=sizes.to_numpy(dtype=int),
    )


def pair(candidate: ItemScores, baseline: ItemScores) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the items present in both samples, aligned (candidate, baseline)."""
    in_c, in_b = _common(candidate, baseline)
    return candidate.values[in_c], baseline.values[in_b]


def _common(candidate: ItemScores, baseline: ItemScores) -> tuple[np.ndarray, np.ndarray]:
    _, in_c, in_b = np.intersect1d(
        candidate.keys.astype(str), baseline.keys.astype(str), return_indices=True
    )
    return in_c, in_b


def balanced(candidate: ItemScores, baseline: ItemScores, *, paired: bool) -> bool:
    """Whether the two samples' per-item scores are alike in how they were measured.

    Rank tests on per-item means need it: the mean of 20 answers to an item spreads far
    less than one answer does, so with 20 asks per item before a change and one after,
    an unchanged configuration's per-item scores differ in shape (a 0/1 score against a
    0.9), and a signed-rank or Mann–Whitney test reads that as a difference (the sandbox
    benchmark showed an unchanged configuration called "better" with p < 1e-9, and a 16%
    drop called "no regression"). Paired: every common item was answered as often on both
    sides. Unpaired: every item of both samples was answered equally often.
    """
    if paired:
        in_c, in_b = _common(candidate, baseline)
        return bool(np.array_equal(candidate.answers()[in_c], baseline.answers()[in_b]))
    counts = np.concatenate([candidate.answers(), baseline.answers()])
    return bool(len(counts) == 0 or np.all(counts == counts[0]))


def is_binary(values: np.ndarray) -> bool:
    """Whether every score is exactly 0 or 1 (exact match asked once per item)."""
    return bool(np.all((values == 0.0) | (values == 1.0)))
