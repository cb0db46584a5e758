"""The ``quality:`` section of a providers.yaml entry: typed, and checked by
``optiinfra validate`` with file, line and field like every other setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from optiinfra.config import load_config, validate_config_file
from optiinfra.errors import ConfigError
from providers import provider_kinds
from providers.quality import QualityProvider

GOOD = """\
version: 1
providers:
  - name: answers
    kind: quality
    timeout: 2m
    credentials:
      vllm: VLLM_KEY
      judge: JUDGE_KEY
    quality:
      golden_set: golden.jsonl
      probes_per_run: 20
      targets:
        - deployment: chat
          base_url: http://vllm-1.internal:8000/v1
          credential: vllm
        - deployment: chat-canary
          base_url: http://vllm-2.internal:8000/v1
          api: completions
          model: llama
      interactions:
        url: https://langfuse.internal/api/public/observations?fromStartTime={start}
        format: langfuse
        sample_rate: 0.25
      judge:
        provider: groq
        model: llama-3.3-70b-versatile
        credential: judge
"""

BAD = """\
version: 1
providers:
  - name: host
    kind: local
    quality:
      golden_set: g.jsonl
  - name: answers
    kind: quality
    credentials:
      vllm: VLLM_KEY
    quality:
      golden_set: g.jsonl
      max_tokens: 0
      targets:
        - deployment: chat
          base_url: ftp://nope
        - deployment: chat-2
          base_url: http://ok:8000/v1
          credential: vlm
      interactions:
        path: a.jsonl
        url: http://b/
      judge:
        provider: groq
        model: m
  - name: empty
    kind: quality
  - name: no-targets
    kind: quality
    quality:
      golden_set: g.jsonl
  - name: bad-source
    kind: quality
    quality:
      interactions: {url: "ftp://b/{start}"}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "providers.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_quality_entry_loads_into_typed_settings(tmp_path: Path) -> None:
    environ = {"VLLM_KEY": "v", "JUDGE_KEY": "j"}
    config = load_config(_write(tmp_path, GOOD), known_kinds=provider_kinds(), environ=environ)
    provider = config.provider("answers")
    quality = provider.quality
    assert quality is not None and quality.probes_per_run == 20 and quality.concurrency == 8
    assert [t.api for t in quality.targets] == ["chat", "completions"]
    assert quality.interactions is not None and quality.interactions.sample_rate == 0.25
    assert "{start}" in (quality.interactions.url or "")  # placeholders kept as written
    assert quality.judge.provider == "groq" and quality.judge.timeout == 30.0
    assert QualityProvider(provider).settings == quality


def test_the_credential_variables_of_an_enabled_entry_must_be_set(tmp_path: Path) -> None:
    issues = validate_config_file(
        _write(tmp_path, GOOD), known_kinds=provider_kinds(), environ={"VLLM_KEY": "v"}
    )
    assert [(i.line, i.field) for i in issues] == [(8, "providers[0].credentials.judge")]


def test_every_quality_problem_has_its_line_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD)
    with pytest.raises(ConfigError) as info:
        load_config(path, known_kinds=provider_kinds(), environ={"VLLM_KEY": "v"})
    found = {(i.line, i.field): i.message for i in info.value.issues}
    expected = {
        (5, "providers[0].quality"): "only a provider of kind quality reads quality:",
        (13, "providers[1].quality.max_tokens"): "greater than or equal to 1",
        (16, "providers[1].quality.targets[0].base_url"): "invalid URL 'ftp://nope'",
        (19, "providers[1].quality.targets[1].credential"): "credential 'vlm' is not declared",
        (20, "providers[1].quality.interactions"): "exactly one of path or url",
        (23, "providers[1].quality.judge"): "judge provider groq needs credential",
        (26, "providers[2].quality"): "a provider of kind quality needs a quality: section",
        (30, "providers[3].quality"): "golden_set needs at least one entry in targets",
        (35, "providers[4].quality.interactions.url"): "expected an http:// or https:// URL",
    }
    for place, fragment in expected.items():
        assert place in found, f"no issue at {place}: {found}"
        assert fragment in found[place], (place, found[place])
    assert len(found) == len(expected), found
