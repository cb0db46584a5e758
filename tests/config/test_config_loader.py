"""providers.yaml loading: the example, every kind of bad input, and where errors point."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from optiinfra.config import (
    EXAMPLE_CONFIG,
    SLO,
    LLMConfig,
    OptiInfraConfig,
    OptimizeSettings,
    Policy,
    ProviderConfig,
    StoreURLs,
    Tenant,
    default_config,
    load_config,
    parse_duration,
    validate_config_file,
    write_example_config,
)
from optiinfra.errors import ConfigError, ConfigIssue, OptiInfraError
from tests.config.example_variants import EXAMPLE_KINDS, full_example

KINDS = EXAMPLE_KINDS
ALL_MODELS = [
    OptiInfraConfig,
    Tenant,
    ProviderConfig,
    SLO,
    Policy,
    LLMConfig,
    OptimizeSettings,
    StoreURLs,
]


def write(tmp_path: Path, text: str, name: str = "providers.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def only_issue(path: Path, **kwargs: object) -> ConfigIssue:
    issues = validate_config_file(path, **kwargs)  # type: ignore[arg-type]
    assert len(issues) == 1, issues
    return issues[0]


# --- the example ------------------------------------------------------------------------


def test_example_validates_without_any_environment_variable(tmp_path: Path) -> None:
    path = write_example_config(tmp_path / "providers.yaml")
    assert path.read_text(encoding="utf-8") == EXAMPLE_CONFIG
    assert validate_config_file(path, known_kinds=["local", "host"], environ={}) == []
    config = load_config(path, known_kinds=["local", "host"], environ={})
    assert [p.name for p in config.enabled_providers()] == ["local"]
    assert config.provider("local").interval == 900.0


def test_the_commented_example_entries_are_valid_once_their_kinds_exist(tmp_path: Path) -> None:
    full = full_example()
    assert full != EXAMPLE_CONFIG
    config = load_config(write(tmp_path, full), known_kinds=KINDS, environ={})
    assert [p.name for p in config.enabled_providers()] == ["local"]
    assert config.provider("runpod").credentials == {"api_key": "RUNPOD_API_KEY"}
    assert config.provider("on-prem").timeout == 30.0


def test_an_unknown_kind_is_reported_even_in_a_disabled_entry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, full_example()), known_kinds=["local"], environ={})
    fields = {issue.field for issue in info.value.issues}
    assert fields == {
        "providers[1].kind",
        "providers[2].kind",
        "providers[3].kind",
        "providers[4].kind",
    }
    runpod = next(i for i in info.value.issues if i.field == "providers[3].kind")
    assert "unknown provider kind 'runpod'; valid kinds: local" in runpod.message


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_every_schema_field_is_described_and_appears_in_the_example(model: type) -> None:
    for field_name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{field_name} has no description"
        pattern = rf"^[ \t]*#?[ \t]*(- )?{re.escape(field_name)}:"
        assert re.search(pattern, EXAMPLE_CONFIG, re.MULTILINE), (
            f"{model.__name__}.{field_name} is not in the example config"
        )


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_every_schema_field_is_documented(model: type) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for field_name in model.model_fields:
        assert f"`{field_name}`" in docs, f"{model.__name__}.{field_name} not in docs"


def test_example_round_trips_through_load_config(tmp_path: Path) -> None:
    first = load_config(write(tmp_path, EXAMPLE_CONFIG), environ={})
    dumped = tmp_path / "again.yaml"
    with dumped.open("w", encoding="utf-8") as handle:
        YAML(typ="safe").dump(first.model_dump(mode="json"), handle)
    assert load_config(dumped, environ={}) == first


def test_write_example_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "providers.yaml"
    assert write_example_config(path) == path
    path.write_text("version: 1\n", encoding="utf-8")
    with pytest.raises(OptiInfraError, match=re.escape(str(path))):
        write_example_config(path)
    assert path.read_text(encoding="utf-8") == "version: 1\n"
    write_example_config(path, force=True)
    assert path.read_text(encoding="utf-8") == EXAMPLE_CONFIG
    with pytest.raises(OptiInfraError, match="is a directory"):
        write_example_config(tmp_path, force=True)


def test_write_example_names_a_path_it_cannot_create(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    target = blocker / "sub" / "providers.yaml"
    with pytest.raises(OptiInfraError, match=re.escape(f"cannot write {target}")):
        write_example_config(target)
    assert blocker.read_text(encoding="utf-8") == "x"


def test_default_config_is_the_local_provider_only() -> None:
    config = default_config()
    assert [(p.name, p.kind, p.enabled) for p in config.providers] == [("local", "local", True)]
    assert config.tenant_names() == ["default"]


# --- files that are not YAML configs -----------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=re.escape(f"{path}: file not found")):
        load_config(path, environ={})


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    assert f"{tmp_path}: is a directory" in info.value.message


def test_pipes_devices_and_huge_files_are_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # reading it would block forever
    assert "not a regular file" in only_issue(fifo, environ={}).message
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"# padding\n" * 500_000)
    assert "too large" in only_issue(huge, environ={}).message


def test_binary_file_names_the_line_of_the_first_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "blob.yaml"
    path.write_bytes(b"version: 1\nproviders: []\n\x89PNG\r\n\x1a\n\xff\xfe")
    issue = only_issue(path, environ={})
    assert (issue.file, issue.line) == (str(path), 3)
    assert "not UTF-8" in issue.message


def test_control_characters_are_a_yaml_error_with_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nllm:\n  provider: no\x00ne\n")
    issue = only_issue(path, environ={})
    assert issue.line == 3
    assert "character" in issue.message


@pytest.mark.parametrize("text", ["", "  \n\n", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    issue = only_issue(write(tmp_path, text), environ={})
    assert issue.line is None
    assert "empty" in issue.message or "comments" in issue.message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    issue = only_issue(write(tmp_path, "- name: local\n  kind: local\n"), environ={})
    assert issue.line == 1
    assert "mapping" in issue.message and "list" in issue.message


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nproviders:\n  - name: a\n   kind: b\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    (issue,) = info.value.issues
    assert issue.line == 4
    assert f"{path}:4: YAML syntax error" in info.value.message


def test_duplicate_yaml_key_is_reported(tmp_path: Path) -> None:
    issue = only_issue(write(tmp_path, "version: 1\nllm: {}\nllm: {}\n"), environ={})
    assert issue.line == 3
    assert "duplicate" in issue.message


def test_recursive_alias_and_alias_bombs_are_refused(tmp_path: Path) -> None:
    recursive = write(tmp_path, "providers: &loop\n  - *loop\n", "loop.yaml")
    assert only_issue(recursive, environ={}).field == "providers[0]"  # ruamel yields null
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefg":
        previous = chr(ord(level) - 1)
        bomb.append(f"{level}: &{level} [" + ", ".join([f"*{previous}"] * 10) + "]")
    path = write(tmp_path, "\n".join(bomb) + "\n", "bomb.yaml")
    assert "too large" in only_issue(path, environ={}).message


def test_multiple_documents_are_refused(tmp_path: Path) -> None:
    issue = only_issue(write(tmp_path, "version: 1\n---\nversion: 1\n"), environ={})
    assert issue.line == 2


# --- field and consistency errors ----------------------------------------------------------

BAD = """\
version: 1
tenants:
  - name: acme
  - name: acme
providers:
  - name: gpu
    kind: promethus
    promethus_url: http://prometheus:9090
    prometheus_url: ftp://prometheus:9090
    dcgm_url: http://admin:hunter2@dcgm host/metrics
    interval: 5 parsecs
    tenant: nobody
  - name: gpu
    kind: local
    credentials: {api_key: RUNPOD_API_KEY}
slos:
  - tenant: ghost
    ttft_p95_seconds: -1
policies:
  - forbidden_changes: [nuke]
stores:
  metrics_url: mysql://db/x
"""


def test_every_problem_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    with pytest.raises(ConfigError) as info:
        load_config(path, known_kinds=KINDS, environ={})
    found = {(i.line, i.field): i.message for i in info.value.issues}
    assert all(i.file == str(path) for i in info.value.issues)
    expected = {
        (4, "tenants[1].name"): "duplicate tenant name 'acme'",
        (7, "providers[0].kind"): "unknown provider kind 'promethus'; did you mean 'prometheus'?",
        (8, "providers[0].promethus_url"): "did you mean 'prometheus_url'?",
        (9, "providers[0].prometheus_url"): "invalid URL 'ftp://prometheus:9090'",
        (10, "providers[0].dcgm_url"): "invalid URL",
        (11, "providers[0].interval"): "invalid duration '5 parsecs'",
        (12, "providers[0].tenant"): "tenant 'nobody' is not declared",
        (13, "providers[1].name"): "duplicate provider name 'gpu'",
        (15, "providers[1].credentials.api_key"): "RUNPOD_API_KEY is not set",
        (17, "slos[0].tenant"): "tenant 'ghost' is not declared",
        (18, "slos[0].ttft_p95_seconds"): "greater than 0",
        (20, "policies[0].forbidden_changes[0]"): "'nuke'",
        (22, "stores.metrics_url"): "chdb://",
    }
    for place, fragment in expected.items():
        assert place in found, f"no issue at {place}: {found}"
        assert fragment in found[place]
    assert len(found) == len(expected)
    assert f"{path}:13: providers[1].name: duplicate" in info.value.message
    assert "hunter2" not in info.value.message
    assert "valid kinds: aws, local, prometheus, quality, runpod" in found[(7, "providers[0].kind")]


def test_unknown_field_far_from_any_name_lists_the_valid_ones(tmp_path: Path) -> None:
    issue = only_issue(write(tmp_path, "version: 1\nllm:\n  colour: blue\n"), environ={})
    assert (issue.line, issue.field) == (3, "llm.colour")
    assert "valid fields: provider, model, base_url, api_key_env, timeout" in issue.message


def test_missing_required_field_points_at_its_item(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  - name: a\n    kind: local\n  - kind: local\n")
    issue = only_issue(path, environ={})
    assert (issue.line, issue.field) == (4, "providers[1].name")
    assert "required" in issue.message


def test_wrong_section_type(tmp_path: Path) -> None:
    issue = only_issue(write(tmp_path, "version: 1\nproviders: local\n"), environ={})
    assert (issue.line, issue.field) == (2, "providers")


def test_declared_tenants_are_usable_and_default_always_exists(tmp_path: Path) -> None:
    text = (
        "tenants: [{name: acme}]\n"
        "providers:\n  - {name: a, kind: local, tenant: acme}\n"
        "  - {name: b, kind: local}\n"
        "policies: [{tenant: acme}, {tenant: default}]\n"
    )
    config = load_config(write(tmp_path, text), environ={})
    assert config.tenant_names() == ["default", "acme"]
    assert [p.tenant for p in config.providers] == ["acme", "default"]


def test_duplicate_policy_for_one_tenant(tmp_path: Path) -> None:
    path = write(tmp_path, "policies:\n  - tenant: default\n  - max_quality_drop: 0.2\n")
    issue = only_issue(path, environ={})
    assert (issue.line, issue.field) == (3, "policies[1]")
    assert "duplicate policy for tenant 'default'" in issue.message


def test_non_text_keys_and_binary_values(tmp_path: Path) -> None:
    text = "providers:\n  - name: a\n    kind: !!binary aGVsbG8=\n    labels: {1: x}\n"
    issues = validate_config_file(write(tmp_path, text), known_kinds=KINDS, environ={})
    assert [(i.line, i.field) for i in issues] == [
        (3, "providers[0].kind"),
        (4, "providers[0].labels[1]"),
    ]
    assert "unknown provider kind 'hello'" in issues[0].message
    assert "keys here must be text" in issues[1].message


def test_labels_accept_numbers_and_durations_parse(tmp_path: Path) -> None:
    text = "providers:\n  - {name: a, kind: local, labels: {zone: 1}, interval: 1.5h}\n"
    provider = load_config(write(tmp_path, text), environ={}).providers[0]
    assert provider.labels == {"zone": "1"}
    assert provider.interval == 5400.0


@pytest.mark.parametrize("value", ["inf", ".inf", "0s", "-5", "true", "400d", "1e999"])
def test_bad_durations(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"providers:\n  - name: a\n    kind: local\n    timeout: {value}\n")
    issue = only_issue(path, environ={})
    assert (issue.line, issue.field) == (4, "providers[0].timeout")


# --- environment variables ----------------------------------------------------------------

CREDENTIALED = """\
providers:
  - name: runpod
    kind: runpod
    credentials:
      api_key: RUNPOD_API_KEY
      org: RUNPOD_ORG
  - name: off
    kind: runpod
    enabled: false
    credentials: {api_key: OFF_API_KEY}
"""


def test_missing_env_var_is_named_and_values_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, CREDENTIALED)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"RUNPOD_API_KEY": "s3cr3t-value", "RUNPOD_ORG": " "})
    (issue,) = info.value.issues
    assert (issue.line, issue.field) == (6, "providers[0].credentials.org")
    assert "environment variable RUNPOD_ORG is empty" in issue.message
    assert "s3cr3t" not in info.value.message
    assert f"{path}:6: providers[0].credentials.org" in info.value.message


def test_disabled_providers_need_no_credentials_and_check_env_can_be_off(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, CREDENTIALED)
    env = {"RUNPOD_API_KEY": "k", "RUNPOD_ORG": "o"}
    assert validate_config_file(path, environ=env) == []
    missing = validate_config_file(path, environ={})
    assert [i.field for i in missing] == [
        "providers[0].credentials.api_key",
        "providers[0].credentials.org",
    ]
    assert load_config(path, check_env=False, environ={}).providers[1].enabled is False


def test_a_pasted_secret_is_refused_without_being_echoed(tmp_path: Path) -> None:
    text = "providers:\n  - name: a\n    kind: runpod\n    credentials: {api_key: rp-9f8e-7d6c}\n"
    issue = only_issue(write(tmp_path, text), environ={})
    assert issue.field == "providers[0].credentials.api_key"
    assert "9f8e" not in str(issue)
    assert "NAME of an environment variable" in issue.message


@pytest.mark.parametrize(
    ("llm", "environ", "field", "variable"),
    [
        ("{provider: groq}", {}, "llm.provider", "GROQ_API_KEY"),
        (
            "{provider: groq, api_key_env: MY_KEY}",
            {"GROQ_API_KEY": "x"},
            "llm.api_key_env",
            "MY_KEY",
        ),
        (
            "{provider: openai-compatible, base_url: 'http://h:8000/v1', api_key_env: OAI}",
            {},
            "llm.api_key_env",
            "OAI",
        ),
    ],
)
def test_llm_key_variables(
    tmp_path: Path, llm: str, environ: dict[str, str], field: str, variable: str
) -> None:
    issue = only_issue(write(tmp_path, f"llm: {llm}\n"), environ=environ)
    assert (issue.line, issue.field) == (1, field)
    assert f"environment variable {variable} is not set" in issue.message


def test_llm_choices_that_need_no_key(tmp_path: Path) -> None:
    text = "llm:\n  provider: openai-compatible\n  base_url: http://localhost:8000/v1\n"
    config = load_config(write(tmp_path, text), environ={})
    assert config.llm.effective_api_key_env() is None
    groq = load_config(write(tmp_path, "llm: {provider: groq}\n"), environ={"GROQ_API_KEY": "k"})
    assert groq.llm.effective_api_key_env() == "GROQ_API_KEY"


def test_openai_compatible_needs_a_base_url(tmp_path: Path) -> None:
    issue = only_issue(
        write(tmp_path, "version: 1\nllm:\n  provider: openai-compatible\n"), environ={}
    )
    assert (issue.line, issue.field) == (2, "llm")
    assert "needs base_url" in issue.message


# --- the schema used from Python -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (900, 900.0),
        ("900", 900.0),
        ("250ms", 0.25),
        ("15m", 900.0),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_python_construction_checks_consistency_too() -> None:
    with pytest.raises(ValidationError) as info:
        OptiInfraConfig(
            providers=[
                {"name": "a", "kind": "local"},
                {"name": "a", "kind": "local", "tenant": "acme"},
            ]
        )
    text = str(info.value)
    assert "providers[1].name: duplicate provider name 'a'" in text
    assert "providers[1].tenant: tenant 'acme' is not declared" in text
