"""Golden sets: questions with reference answers, read from JSONL or YAML, and the slice
of them one collection run sends.

A golden set is what a deployment is graded on, so a typo in it must stop the run with
the place to fix, not quietly shrink the set: every problem is reported at once as
``file:line: field: message`` (a :class:`~optiinfra.errors.ConfigError`).

Item fields (docs/quality.md): ``id`` (unique), ``prompt`` (a string, or chat messages
``[{role, content}]`` with role system/user/assistant), ``reference`` (the right answer),
optional ``aliases`` (other right answers) and ``category``.

Example (JSONL, one item a line)::

    {"id": "geo-1", "prompt": "What is the capital of France?", "reference": "Paris"}
    {"id": "chem-1", "prompt": [{"role": "user", "content": "Symbol for gold?"}],
     "reference": "Au", "aliases": ["AU"], "category": "chemistry"}
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from optiinfra.errors import ConfigError, ConfigIssue

ROLES = ("system", "user", "assistant")
FIELDS = ("id", "prompt", "reference", "aliases", "category")
_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class GoldenItem:
    """One question with its reference answer (and any other accepted answers)."""

    id: str
    prompt: str | tuple[ChatMessage, ...]
    reference: str
    aliases: tuple[str, ...] = ()
    category: str = ""

    def messages(self, system_prompt: str | None = None) -> list[dict[str, str]]:
        """The prompt as chat messages, with ``system_prompt`` first when given."""
        if isinstance(self.prompt, str):
            chat = [{"role": "user", "content": self.prompt}]
        else:
            chat = [{"role": m.role, "content": m.content} for m in self.prompt]
        if system_prompt:
            chat.insert(0, {"role": "system", "content": system_prompt})
        return chat

    def text(self, system_prompt: str | None = None) -> str:
        """The prompt as one text (for completions endpoints and the judge)."""
        return "\n".join(m["content"] for m in self.messages(system_prompt))


@dataclass(frozen=True)
class GoldenSet:
    source: str
    items: tuple[GoldenItem, ...]


def load_golden_set(path: str | Path) -> GoldenSet:
    """Read a ``.jsonl``, ``.yaml`` or ``.yml`` golden set; raise ``ConfigError`` listing
    every problem (file, line, field)."""
    file = str(path)
    target = Path(path).expanduser()
    suffix = target.suffix.lower()
    if suffix not in (".jsonl", ".yaml", ".yml"):
        raise ConfigError(
            [ConfigIssue(file, None, "", "a golden set is a .jsonl, .yaml or .yml file")]
        )
    try:
        if target.stat().st_size > _MAX_BYTES:
            raise ConfigError([ConfigIssue(file, None, "", "golden set larger than 64 MiB")])
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(file, None, "", "golden set file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([ConfigIssue(file, None, "", "is a directory, not a file")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(file, None, "", "not UTF-8 text")]) from None
    except OSError as exc:
        message = f"cannot read: {exc.strerror or exc}"
        raise ConfigError([ConfigIssue(file, None, "", message)]) from None
    parse = parse_golden_jsonl if suffix == ".jsonl" else parse_golden_yaml
    return GoldenSet(file, parse(text, file))


def parse_golden_jsonl(text: str, source: str) -> tuple[GoldenItem, ...]:
    """Items of a JSONL golden set (blank lines and lines starting with ``#`` skipped)."""
    issues: list[ConfigIssue] = []
    entries: list[tuple[int, Any, dict[str, int]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entries.append((number, json.loads(line), {}))
        except json.JSONDecodeError as exc:
            issues.append(ConfigIssue(source, number, "", f"not valid JSON: {exc.msg}"))
    return _build(entries, source, issues)


def parse_golden_yaml(text: str, source: str) -> tuple[GoldenItem, ...]:
    """Items of a YAML golden set: a list of items, or a mapping with an ``items`` list."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError([ConfigIssue(source, line, "", f"YAML syntax error: {what}")]) from None
    except (YAMLError, RecursionError) as exc:
        raise ConfigError([ConfigIssue(source, None, "", f"YAML error: {exc}")]) from None
    if isinstance(tree, CommentedMap) and isinstance(tree.get("items"), CommentedSeq):
        tree = tree["items"]
    if not isinstance(tree, CommentedSeq):
        message = "expected a list of items (or a mapping with an items: list)"
        raise ConfigError([ConfigIssue(source, 1 if tree is not None else None, "", message)])
    entries: list[tuple[int, Any, dict[str, int]]] = []
    for index, node in enumerate(tree):
        line = tree.lc.item(index)[0] + 1
        key_lines: dict[str, int] = {}
        if isinstance(node, CommentedMap):
            for key in node:
                try:
                    key_lines[str(key)] = node.lc.key(key)[0] + 1
                except (KeyError, TypeError, IndexError):
                    continue
        entries.append((line, _plain(node), key_lines))
    return _build(entries, source, [])


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool | int | float) or node is None:
        return node
    return str(node)


def _build(
    entries: list[tuple[int, Any, dict[str, int]]], source: str, issues: list[ConfigIssue]
) -> tuple[GoldenItem, ...]:
    items: list[GoldenItem] = []
    first_line: dict[str, int] = {}
    for line, raw, key_lines in entries:
        problems: list[tuple[str, str]] = []
        item = _item(raw, problems)
        for field, message in problems:
            where = key_lines.get(field.split(".")[0].split("[")[0], line)
            issues.append(ConfigIssue(source, where, field, message))
        if item is None:
            continue
        if item.id in first_line:
            where = key_lines.get("id", line)
            message = f"duplicate id {item.id!r} (first at line {first_line[item.id]})"
            issues.append(ConfigIssue(source, where, "id", message))
            continue
        first_line[item.id] = line
        items.append(item)
    if not issues and not items:
        issues.append(ConfigIssue(source, None, "", "the golden set has no items"))
    if issues:
        raise ConfigError(issues)
    return tuple(items)


def _item(raw: Any, problems: list[tuple[str, str]]) -> GoldenItem | None:
    if not isinstance(raw, dict):
        problems.append(("", f"expected an object with fields {', '.join(FIELDS)}"))
        return None
    for key in raw:
        if key not in FIELDS:
            problems.append((str(key), f"unknown field; valid fields: {', '.join(FIELDS)}"))
    item_id = raw.get("id")
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    if not isinstance(item_id, str) or not item_id.strip():
        problems.append(("id", "required, a non-empty string"))
    prompt = _prompt(raw.get("prompt"), problems)
    reference = raw.get("reference")
    if isinstance(reference, int | float) and not isinstance(reference, bool):
        reference = str(reference)
    if not isinstance(reference, str) or not reference.strip():
        problems.append(("reference", "required, a non-empty string"))
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        problems.append(("aliases", "expected a list of non-empty strings"))
    category = raw.get("category", "")
    if not isinstance(category, str):
        problems.append(("category", "expected a string"))
    if problems:
        return None
    assert isinstance(item_id, str) and isinstance(reference, str) and prompt is not None
    return GoldenItem(
        id=item_id.strip(),
        prompt=prompt,
        reference=reference.strip(),
        aliases=tuple(a.strip() for a in aliases),
        category=category,
    )


def _prompt(value: Any, problems: list[tuple[str, str]]) -> str | tuple[ChatMessage, ...] | None:
    if isinstance(value, str) and value.strip():
        return value
    if not isinstance(value, list) or not value:
        problems.append(("prompt", "required: a non-empty string or a list of chat messages"))
        return None
    messages: list[ChatMessage] = []
    for index, message in enumerate(value):
        where = f"prompt[{index}]"
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            problems.append((where, "expected {role, content} and nothing else"))
            continue
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            problems.append((f"{where}.role", f"expected one of {', '.join(ROLES)}"))
        if not isinstance(content, str) or not content.strip():
            problems.append((f"{where}.content", "required, a non-empty string"))
        if role in ROLES and isinstance(content, str) and content.strip():
            messages.append(ChatMessage(str(role), content))
    return tuple(messages) if len(messages) == len(value) else None


def window_index(start_epoch: float, end_epoch: float) -> int:
    """Which collection window ``[start, end)`` is, counting windows of its length from the
    epoch: consecutive runs of a provider get consecutive numbers."""
    length = end_epoch - start_epoch
    return int(end_epoch // length) if length > 0 else 0


def select_items(
    items: Sequence[GoldenItem], count: int, window: int, salt: str = ""
) -> list[GoldenItem]:
    """The ``count`` items run number ``window`` sends: a fixed shuffle of the set (by a
    hash of ``salt`` and each id, so it does not depend on file order) read as a ring,
    ``count`` items further on each window, so ``ceil(len/count)`` consecutive runs
    cover every item and a retried run sends the same items."""
    if count <= 0 or not items:
        return []
    ring = sorted(items, key=lambda it: hashlib.sha256(f"{salt}\0{it.id}".encode()).digest())
    if count >= len(ring):
        return ring
    first = (window * count) % len(ring)
    return [ring[(first + k) % len(ring)] for k in range(count)]
