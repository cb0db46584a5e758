"""Property-based: no input makes the loader fail with anything but a ConfigError.

Inputs: arbitrary text and bytes, arbitrary YAML-able data, and mutations of the
commented example (deleted keys, wrong types, random strings in URLs and durations).
Every issue names the file; issues at a key that exists in the file carry a line.
"""

from __future__ import annotations

import copy
import io
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from optiinfra.config import (
    SLO,
    LLMConfig,
    OptiInfraConfig,
    Policy,
    ProviderConfig,
    StoreURLs,
    Tenant,
    load_config,
    validate_config_file,
)
from optiinfra.errors import ConfigError, ConfigIssue
from tests.config.example_variants import EXAMPLE_KINDS, full_example

KINDS = EXAMPLE_KINDS
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIELD_NAMES = sorted(
    {
        name
        for model in (OptiInfraConfig, Tenant, ProviderConfig, SLO, Policy, LLMConfig, StoreURLs)
        for name in model.model_fields
    }
)
SECTIONS = list(OptiInfraConfig.model_fields)
_FIRST_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*")


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties") / "providers.yaml"


def dump(data: Any) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def check(path: Path) -> list[ConfigIssue]:
    """Load ``path``; it must succeed or raise ConfigError whose issues name the file."""
    try:
        config = load_config(path, known_kinds=KINDS, environ={})
    except ConfigError as exc:
        issues = exc.issues
        assert issues, "a ConfigError must list at least one issue"
        text_lines = len(path.read_bytes().splitlines()) + 1
        for issue in issues:
            assert issue.file == str(path)
            assert issue.line is None or 1 <= issue.line <= text_lines
            assert str(issue) in exc.message
        assert validate_config_file(path, known_kinds=KINDS, environ={}) == issues
        return issues
    assert isinstance(config, OptiInfraConfig)
    assert validate_config_file(path, known_kinds=KINDS, environ={}) == []
    return []


def assert_lines_where_keys_exist(issues: list[ConfigIssue], data: Any) -> None:
    """An issue whose field starts at a top-level key present in the file has a line."""
    if not isinstance(data, dict):
        return
    for issue in issues:
        match = _FIRST_KEY.match(issue.field)
        if match and match.group(0) in data:
            assert issue.line is not None, issue


yaml_ish = st.text(alphabet=st.sampled_from(list("ab:-[]{}#&*!|>'\"\n \t,?0.9%@`\\")))


@SETTINGS
@given(text=st.one_of(st.text(), yaml_ish))
def test_arbitrary_text(config_path: Path, text: str) -> None:
    config_path.write_text(text, encoding="utf-8")
    check(config_path)


@SETTINGS
@given(raw=st.binary())
def test_arbitrary_bytes(config_path: Path, raw: bytes) -> None:
    config_path.write_bytes(raw)
    check(config_path)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=10))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)
documents = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(SECTIONS), keys), values, max_size=7),
    values,
)


@SETTINGS
@given(data=documents)
def test_arbitrary_yaml_data(config_path: Path, data: Any) -> None:
    config_path.write_text(dump(data), encoding="utf-8")
    assert_lines_where_keys_exist(check(config_path), data)


_EXAMPLE_DATA: dict[str, Any] = YAML(typ="safe", pure=True).load(full_example())


def example_data() -> dict[str, Any]:
    return copy.deepcopy(_EXAMPLE_DATA)


@st.composite
def mutated_examples(draw: st.DrawFn) -> dict[str, Any]:
    """The example with one node deleted, replaced by anything, or given a random string."""
    data = example_data()
    parent: Any = None
    key: Any = None
    node: Any = data
    while isinstance(node, dict | list) and node and (parent is None or draw(st.booleans())):
        choices = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, draw(st.sampled_from(choices))
        node = node[key]
    if parent is None:
        return data
    action = draw(st.sampled_from(["delete", "replace", "string"]))
    if action == "delete":
        del parent[key]
    elif action == "replace":
        parent[key] = draw(values)
    else:
        parent[key] = draw(st.text(max_size=30))
    return data


@SETTINGS
@given(data=mutated_examples())
def test_mutated_example(config_path: Path, data: dict[str, Any]) -> None:
    config_path.write_text(dump(data), encoding="utf-8")
    assert_lines_where_keys_exist(check(config_path), data)


# Fields where no string starting with "zzMARK" is valid, each as its path in the example.
STRING_FIELDS: list[tuple[Any, ...]] = [
    ("tenants", 0, "name"),
    ("providers", 0, "name"),
    ("providers", 0, "kind"),
    ("providers", 0, "interval"),
    ("providers", 1, "timeout"),
    ("providers", 1, "tenant"),
    ("providers", 1, "prometheus_url"),
    ("providers", 1, "dcgm_url"),
    ("providers", 1, "metrics_urls", 0),
    ("slos", 0, "tenant"),
    ("policies", 0, "tenant"),
    ("llm", "timeout"),
    ("stores", "metrics_url"),
    ("stores", "state_url"),
    ("stores", "memory_url"),
]
one_line_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85"
    ),
    max_size=20,
)


def dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@settings(SETTINGS, max_examples=100)
@given(path=st.sampled_from(STRING_FIELDS), tail=one_line_text)
def test_a_bad_string_is_reported_at_its_own_line(
    config_path: Path, path: tuple[Any, ...], tail: str
) -> None:
    data = example_data()
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = "zzMARK" + tail
    text = dump(data)
    config_path.write_text(text, encoding="utf-8")
    marked = [n for n, line in enumerate(text.splitlines(), start=1) if "zzMARK" in line]
    assert len(marked) == 1
    issues = check(config_path)
    assert any(i.field == dotted(path) and i.line == marked[0] for i in issues), issues
