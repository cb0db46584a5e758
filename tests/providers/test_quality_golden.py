"""Golden sets: loading (every problem with file, line and field) and per-run selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optiinfra.errors import ConfigError
from providers.quality.golden import (
    GoldenItem,
    load_golden_set,
    select_items,
    window_index,
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_items_with_text_and_chat_prompts(tmp_path: Path) -> None:
    lines = [
        {"id": "geo-1", "prompt": "What is the capital of France?", "reference": "Paris"},
        {
            "id": 7,
            "prompt": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Symbol for gold?"},
            ],
            "reference": "Au",
            "aliases": ["gold (Au)"],
            "category": "chemistry",
        },
    ]
    text = "# a comment\n\n" + "\n".join(json.dumps(line) for line in lines) + "\n"
    golden = load_golden_set(_write(tmp_path, "golden.jsonl", text))
    first, second = golden.items
    assert first.messages("Answer only.") == [
        {"role": "system", "content": "Answer only."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    assert second.id == "7" and second.aliases == ("gold (Au)",)
    assert second.messages()[0] == {"role": "system", "content": "Be brief."}
    assert second.text() == "Be brief.\nSymbol for gold?"


def test_every_jsonl_problem_is_listed_with_its_line_and_field(tmp_path: Path) -> None:
    text = "\n".join(
        [
            '{"id": "a", "prompt": "Q1", "reference": "A1"}',
            '{"id": "b", "prompt": "Q2"',  # line 2: broken JSON
            '{"id": "c", "prompt": "Q3"}',  # line 3: no reference
            '{"id": "d", "prompt": "Q4", "reference": "A4", "refrence": "x"}',  # line 4
            '{"id": "e", "prompt": [{"role": "robot", "content": "hi"}], "reference": "x"}',
            '{"id": "a", "prompt": "Q6", "reference": "A6"}',  # line 6: duplicate id
            '["not", "an", "object"]',  # line 7
            '{"id": "g", "prompt": "", "reference": "x", "aliases": "x"}',  # line 8
        ]
    )
    path = _write(tmp_path, "golden.jsonl", text)
    with pytest.raises(ConfigError) as info:
        load_golden_set(path)
    found = {(i.line, i.field): i.message for i in info.value.issues}
    assert all(i.file == str(path) for i in info.value.issues)
    assert "not valid JSON" in found[(2, "")]
    assert "required" in found[(3, "reference")]
    assert "unknown field" in found[(4, "refrence")]
    assert "system, user, assistant" in found[(5, "prompt[0].role")]
    assert "duplicate id 'a' (first at line 1)" in found[(6, "id")]
    assert "expected an object" in found[(7, "")]
    assert "non-empty string" in found[(8, "prompt")]
    assert "list of non-empty strings" in found[(8, "aliases")]
    assert len(found) == 8
    assert f"{path}:6: id: duplicate id" in str(info.value)


def test_yaml_golden_set_points_at_the_key_line(tmp_path: Path) -> None:
    text = """\
items:
  - id: q1
    prompt: What is 2 plus 2?
    reference: "4"
  - id: q2
    prompt: What is 3 plus 3?
    reference: 6
    colour: blue
"""
    path = _write(tmp_path, "golden.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_golden_set(path)
    (issue,) = info.value.issues
    assert (issue.line, issue.field) == (8, "colour")
    good = _write(tmp_path, "good.yml", text.replace("    colour: blue\n", ""))
    items = load_golden_set(good).items
    assert [(i.id, i.reference) for i in items] == [("q1", "4"), ("q2", "6")]


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("golden.csv", "id,prompt\n", "a .jsonl, .yaml or .yml file"),
        ("missing.jsonl", None, "not found"),
        ("empty.jsonl", "\n# nothing\n", "has no items"),
        ("broken.yaml", "items: [\n", "YAML syntax error"),
        ("scalar.yaml", "just text\n", "expected a list of items"),
    ],
)
def test_unusable_files_are_named(
    tmp_path: Path, name: str, text: str | None, fragment: str
) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_golden_set(path)
    assert fragment in str(info.value) and str(path) in str(info.value)


def _items(n: int) -> list[GoldenItem]:
    return [GoldenItem(id=f"q{i}", prompt=f"question {i}", reference=str(i)) for i in range(n)]


def test_successive_windows_cover_the_whole_set_and_a_window_repeats_itself() -> None:
    items = _items(23)
    runs = [select_items(items, 5, window, salt="prov") for window in range(100, 105)]
    assert all(len(run) == 5 for run in runs)
    covered = {item.id for run in runs for item in run}
    assert covered == {item.id for item in items}  # ceil(23 / 5) = 5 runs cover all
    assert select_items(items, 5, 102, salt="prov") == runs[2]  # a retried run: same items
    assert select_items(list(reversed(items)), 5, 102, salt="prov") == runs[2]  # not file order
    assert select_items(items, 50, 3) == select_items(items, 23, 9)  # more than the set: all
    assert select_items(items, 0, 3) == []


def test_consecutive_collection_windows_get_consecutive_numbers() -> None:
    start = 1_700_000_100.0
    numbers = [window_index(start + k * 900, start + (k + 1) * 900) for k in range(4)]
    assert numbers == [numbers[0] + k for k in range(4)]
