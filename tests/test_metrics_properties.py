"""Property tests: metric normalisation never fails with anything but MetricValueError."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from optiinfra.metrics import (
    CANONICAL,
    SOURCES,
    MetricValueError,
    lookup,
    mappings,
    normalise_gauges,
    normalise_value,
)

PROPERTY = settings(max_examples=200, deadline=None)

sources = st.sampled_from(SOURCES)
known_rows = st.sampled_from([row for source in SOURCES for row in mappings(source)])
gauge_rows = st.sampled_from(
    [row for source in SOURCES for row in mappings(source) if row.derive == "value"]
)
labels = st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=4)
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers())
garbage = st.one_of(
    st.none(), st.booleans(), st.text(max_size=5), st.binary(max_size=5), st.lists(st.integers())
)

garbage_labels = st.one_of(
    st.none(),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.one_of(st.integers(), st.none()), min_size=1),
    st.dictionaries(st.integers(), st.text(max_size=3), min_size=1),
)


def _is_garbage(name: object, lab: object, value: object) -> bool:
    good_labels = isinstance(lab, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in lab.items()
    )
    good_value = isinstance(value, (int, float)) and not isinstance(value, bool)
    return not (isinstance(name, str) and good_labels and good_value)


def _names(source: str) -> st.SearchStrategy[str]:
    known = [row.source_name for row in mappings(source)]
    return st.one_of(st.text(max_size=40), st.sampled_from(known))


@PROPERTY
@given(source=sources, name=st.one_of(st.text(max_size=60), st.integers(), st.none()))
def test_lookup_returns_mapping_none_or_clear_error(source: str, name: object) -> None:
    try:
        found = lookup(source, name)  # type: ignore[arg-type]
    except MetricValueError as exc:
        assert not isinstance(name, str)
        assert source in str(exc)
        return
    assert found is None or (found.source == source and found.canonical in CANONICAL)


@PROPERTY
@given(row=known_rows)
def test_known_names_always_map_to_a_canonical_name(row) -> None:
    found = lookup(row.source, row.source_name)
    assert found == row
    assert found.canonical in CANONICAL


@PROPERTY
@given(
    data=st.data(),
    source=sources,
    values=st.lists(
        st.tuples(st.one_of(labels, labels, garbage_labels), st.one_of(numbers, garbage)),
        max_size=6,
    ),
)
def test_normalise_gauges_never_crashes_on_arbitrary_series(data, source, values) -> None:
    names = st.one_of(_names(source), _names(source), st.integers())
    series = [(data.draw(names), lab, value) for lab, value in values]
    try:
        out = normalise_gauges(source, series)
    except MetricValueError as exc:
        # only garbage may fail, and the message names the source
        assert any(_is_garbage(*item) for item in series)
        assert source in str(exc)
        return
    for canonical, out_labels, value in out:
        assert canonical in CANONICAL
        assert math.isfinite(value)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in out_labels.items())


@PROPERTY
@given(row=gauge_rows, lab=labels, value=st.floats(allow_nan=False, allow_infinity=False))
def test_known_gauges_map_with_their_unit(row, lab, value) -> None:
    out = normalise_gauges(row.source, [(row.source_name, lab, value)])
    if not math.isfinite(value * row.scale):
        assert out == []  # beyond float range once converted: dropped like NaN
        return
    assert len(out) == 1
    canonical, _, converted = out[0]
    assert canonical == row.canonical
    assert converted == value * row.scale


@PROPERTY
@given(row=known_rows, value=st.one_of(numbers, garbage))
def test_normalise_value_is_finite_or_clear_error(row, value) -> None:
    try:
        result = normalise_value(row, value)
    except MetricValueError as exc:
        assert row.source_name in str(exc)
        return
    assert isinstance(result, float)
    assert not math.isnan(result)


@PROPERTY
@given(
    row=st.sampled_from(
        [r for s in SOURCES for r in mappings(s) if r.conversion == "percent_to_ratio"]
    ),
    percent=st.floats(min_value=0, max_value=100),
)
def test_in_range_percentages_become_ratios_in_unit_interval(row, percent) -> None:
    assert CANONICAL[row.canonical].unit == "ratio"
    assert 0.0 <= normalise_value(row, percent) <= 1.0
