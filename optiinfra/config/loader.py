"""Read ``providers.yaml`` and report every problem in it, each with file, line and field.

Parsing keeps ruamel.yaml's round-trip tree next to the plain data handed to pydantic,
so every validation error, which pydantic locates as a path such as
``("providers", 1, "prometheus_url")``, is mapped back to the line where that key or
item sits. All checks run in one pass (field validation, cross-section consistency,
provider kinds, environment variables), so a user fixes the file once, not once per
error.

Example::

    config = load_config("providers.yaml", known_kinds=provider_kinds())
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tempfile
import typing
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from optiinfra.config.example import EXAMPLE_CONFIG
from optiinfra.config.schema import (
    CONSISTENCY_ERROR,
    SECTION_MODELS,
    Loc,
    OptiInfraConfig,
    ProviderConfig,
    consistency_problems,
)
from optiinfra.errors import ConfigError, ConfigIssue, OptiInfraError

__all__ = [
    "EXAMPLE_CONFIG",
    "default_config",
    "load_config",
    "validate_config_file",
    "write_example_config",
]

#: Upper bound on nodes after alias expansion ("billion laughs" files stop here).
_MAX_NODES = 200_000
#: A providers.yaml is a few kilobytes; refuse to read megabytes of something else.
_MAX_BYTES = 4 * 1024 * 1024
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


_M = typing.TypeVar("_M", bound=BaseModel)


class _Unusable(Exception):
    """The parsed document cannot be turned into plain data (recursive, too large)."""


def load_config(
    path: str | Path,
    *,
    known_kinds: Iterable[str] | None = None,
    check_env: bool = True,
    environ: Mapping[str, str] | None = None,
) -> OptiInfraConfig:
    """Load and validate ``path``; raise :class:`ConfigError` listing every problem.

    ``known_kinds`` (e.g. ``providers.registry.provider_kinds()``) turns on the kind
    check; ``check_env`` requires every credential variable, and the LLM's key, to be
    set in ``environ`` (default ``os.environ``). The kind check covers every entry, so a
    typo in a disabled one is caught before someone enables it; the env check looks at
    *enabled* providers only (a disabled entry may name a variable this machine lacks).
    Messages name variables, never their values.
    """
    config, issues = _load(path, known_kinds, check_env, environ)
    if issues or config is None:
        raise ConfigError(issues)
    return config


def validate_config_file(
    path: str | Path,
    *,
    known_kinds: Iterable[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[ConfigIssue]:
    """The checks of :func:`load_config` (environment included); ``[]`` means valid."""
    return _load(path, known_kinds, True, environ)[1]


def load_yaml_model(path: str | Path, model: type[_M]) -> _M:
    """Load any YAML file into the pydantic ``model`` with this module's error reporting:
    every problem as ``file:line: field: message`` in one :class:`ConfigError`.

    Used for files other than providers.yaml (a sandbox fleet, for one).
    """
    file = str(path)
    text, problem = _read_text(Path(path).expanduser())
    if problem is not None:
        raise ConfigError([ConfigIssue(file, problem[0], "", problem[1])])
    tree, problem = _parse_yaml(text)
    if problem is not None:
        raise ConfigError([ConfigIssue(file, problem[0], "", problem[1])])
    if not isinstance(tree, CommentedMap):
        found = "an empty document" if tree is None else f"a {_yaml_type(tree)}"
        message = f"the top level must be a mapping; found {found}"
        raise ConfigError([ConfigIssue(file, 1, "", message)])
    try:
        data = _to_plain(tree, set(), [_MAX_NODES])
        return model.model_validate(data)
    except _Unusable as exc:
        raise ConfigError([ConfigIssue(file, None, "", str(exc))]) from None
    except ValidationError as exc:
        issues = []
        for error in exc.errors():
            loc, message = _describe(error, model)
            line, field = _locate(tree, loc)
            issues.append(ConfigIssue(file, line, field, message))
        raise ConfigError(_sorted_unique(issues)) from None


def default_config() -> OptiInfraConfig:
    """What OptiInfra runs with when no ``providers.yaml`` exists: this host only."""
    return OptiInfraConfig(providers=[ProviderConfig(name="local", kind="local")])


def write_example_config(path: str | Path, *, force: bool = False) -> Path:
    """Write :data:`EXAMPLE_CONFIG` to ``path`` (creating parent directories).

    Refuses to replace an existing file unless ``force``; the file is written to a
    temporary name and renamed, so a failed write never leaves half a config behind.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise OptiInfraError(f"{target} is a directory; give a file path for the example config")
    if target.exists() and not force:
        raise OptiInfraError(f"{target} already exists; refusing to overwrite it without force")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(EXAMPLE_CONFIG)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OptiInfraError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


# --- reading and parsing ---------------------------------------------------------------


def _load(
    path: str | Path,
    known_kinds: Iterable[str] | None,
    check_env: bool,
    environ: Mapping[str, str] | None,
) -> tuple[OptiInfraConfig | None, list[ConfigIssue]]:
    file = str(path)
    text, problem = _read_text(Path(path).expanduser())
    if problem is not None:
        return None, [ConfigIssue(file, problem[0], "", problem[1])]
    tree, problem = _parse_yaml(text)
    if problem is not None:
        return None, [ConfigIssue(file, problem[0], "", problem[1])]
    if not isinstance(tree, CommentedMap):
        found = "an empty document" if tree is None else f"a {_yaml_type(tree)}"
        line = 1 if tree is not None else None
        message = (
            "the top level must be a mapping of sections (version, tenants, providers, "
            f"slos, policies, llm, stores); found {found}"
        )
        return None, [ConfigIssue(file, line, "", message)]
    try:
        data = _to_plain(tree, set(), [_MAX_NODES])
    except _Unusable as exc:
        return None, [ConfigIssue(file, None, "", str(exc))]

    issues: list[ConfigIssue] = []

    def add(loc: Loc, message: str) -> None:
        line, field = _locate(tree, loc)
        issues.append(ConfigIssue(file, line, field, message))

    config: OptiInfraConfig | None = None
    try:
        config = OptiInfraConfig.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            if error["type"] != CONSISTENCY_ERROR:
                loc, message = _describe(error, OptiInfraConfig)
                add(loc, message)
    for loc, message in consistency_problems(data):
        add(loc, message)
    if known_kinds is not None:
        for loc, message in _kind_problems(data, known_kinds):
            add(loc, message)
    if check_env:
        for loc, message in _env_problems(data, os.environ if environ is None else environ):
            add(loc, message)
    return (config if not issues else None), _sorted_unique(issues)


def _read_text(path: Path) -> tuple[str, None] | tuple[None, tuple[int | None, str]]:
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            return None, (None, "is a directory, not a configuration file")
        if not stat.S_ISREG(info.st_mode):
            return None, (None, "is not a regular file (a pipe or device?)")
        if info.st_size > _MAX_BYTES:
            return None, (None, f"file too large ({info.st_size} bytes; at most {_MAX_BYTES})")
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, (None, "file not found")
    except IsADirectoryError:
        return None, (None, "is a directory, not a configuration file")
    except PermissionError:
        return None, (None, "permission denied: cannot read the file")
    except OSError as exc:
        if path.is_dir():
            return None, (None, "is a directory, not a configuration file")
        return None, (None, f"cannot read the file: {exc.strerror or exc}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start : exc.start + 1].hex()
        return None, (line, f"not UTF-8 text (byte 0x{byte}); is this a binary file?")
    if not text.strip():
        return None, (None, "file is empty; run `optiinfra init` for a commented example")
    return text, None


def _parse_yaml(text: str) -> tuple[Any, tuple[int | None, str] | None]:
    yaml = YAML(typ="rt")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return yaml.load(text), None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        return None, (line, f"YAML syntax error: {what or 'cannot parse'}")
    except ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        return None, (line, f"YAML cannot read character {exc.character!r}: {exc.reason}")
    except YAMLError as exc:
        return None, (None, f"YAML error: {_one_line(str(exc))}")
    except RecursionError:
        return None, (None, "YAML nested too deeply")
    except Exception as exc:  # the parser is third-party; any failure is still the input's
        return None, (None, f"cannot parse YAML ({type(exc).__name__}: {_one_line(str(exc))})")


def _to_plain(node: Any, ancestors: set[int], budget: list[int]) -> Any:
    """ruamel's round-trip nodes → plain dict/list/str/int/float/bool for pydantic."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _Unusable(f"YAML document too large (more than {_MAX_NODES} values after aliases)")
    if isinstance(node, dict | list):
        if id(node) in ancestors:
            raise _Unusable("YAML alias refers to itself (a recursive structure)")
        if len(ancestors) > 200:
            raise _Unusable("YAML nested too deeply (more than 200 levels)")
        ancestors.add(id(node))
        try:
            if isinstance(node, dict):
                return {_plain_key(k): _to_plain(v, ancestors, budget) for k, v in node.items()}
            return [_to_plain(item, ancestors, budget) for item in node]
        finally:
            ancestors.discard(id(node))
    return _plain_scalar(node)


def _plain_scalar(value: Any) -> Any:
    if isinstance(value, TaggedScalar):
        return str(value.value)
    if isinstance(value, ScalarBoolean | bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):  # !!binary: decode as pydantic would, so checks agree
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value  # None, date, datetime


def _plain_key(key: Any) -> Any:
    if key is None or isinstance(key, str | int | float | bool | TaggedScalar):
        return _plain_scalar(key)
    return str(key)  # complex keys (sequences, mappings) only ever get "unknown field"


def _yaml_type(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


# --- locating problems -----------------------------------------------------------------


def _locate(tree: CommentedMap, loc: Loc) -> tuple[int | None, str]:
    """Line (1-based) of the deepest key or item of ``loc`` found in the file, and the
    dotted field path (``providers[1].prometheus_url``)."""
    node: Any = tree
    line: int | None = None
    parts: list[str | int] = []
    for component in loc:
        if isinstance(node, CommentedMap):
            key = _find_key(node, component)
            if key is not _MISSING:
                line = _key_line(node, key) or line
                node = node[key]
                parts.append(component)
                continue
        elif (
            isinstance(node, CommentedSeq)
            and isinstance(component, int)
            and 0 <= component < len(node)
        ):
            line = _item_line(node, component) or line
            node = node[component]
            parts.append(component)
            continue
        node = None
        if isinstance(component, str) and ("[" in component or component.startswith("function")):
            continue  # pydantic's own steps ("[key]", union members), not the user's
        parts.append(component)
    return line, _field_path(parts)


_MISSING = object()


def _find_key(node: CommentedMap, component: str | int) -> Any:
    if component in node:
        return component
    for key in node:  # pydantic writes non-string keys as str(key)
        if str(key) == str(component):
            return key
    return _MISSING


def _key_line(node: CommentedMap, key: Any) -> int | None:
    try:
        return node.lc.key(key)[0] + 1
    except (KeyError, TypeError, IndexError):
        return node.lc.line + 1 if node.lc.line is not None else None  # merged key


def _item_line(node: CommentedSeq, index: int) -> int | None:
    try:
        return node.lc.item(index)[0] + 1
    except (KeyError, TypeError, IndexError):
        return node.lc.line + 1 if node.lc.line is not None else None


def _field_path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


# --- turning errors into messages ------------------------------------------------------


def _describe(error: Any, root: type[BaseModel] | None = None) -> tuple[Loc, str]:
    loc: Loc = tuple(error["loc"])
    kind: str = error["type"]
    message: str = error["msg"]
    value = error.get("input")
    secret_place = "credentials" in loc or "api_key_env" in loc
    if kind == "extra_forbidden":
        return loc, _unknown_field_message(loc, root)
    if kind == "missing":
        return loc, "required field is missing"
    if "[key]" in loc:
        return loc, "keys here must be text (quote numbers, null or dates used as keys)"
    if kind == "store_url":
        ctx = error.get("ctx") or {}
        return (*loc, ctx.get("field", "")), str(ctx.get("problem", message))
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    if kind.startswith("url_") and isinstance(value, str):
        return loc, f"invalid URL {_mask_url(value)!r}: {message}"
    if not secret_place and isinstance(value, str | int | float) and not isinstance(value, bool):
        shown = repr(value)
        if len(shown) <= 60 and shown not in message:
            message = f"{message} (got {shown})"
    return loc, message


def _unknown_field_message(loc: Loc, root: type[BaseModel] | None = None) -> str:
    name = str(loc[-1])
    if root is None:
        sections = [part for part in loc[:-1] if isinstance(part, str)]
        model: type[BaseModel] = OptiInfraConfig
        if len(sections) == 1 and sections[0] in SECTION_MODELS:
            model = SECTION_MODELS[sections[0]]
    else:
        model = _model_at(root, loc[:-1])
    valid = list(model.model_fields)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid fields: {', '.join(valid)}"
    return f"unknown field {name!r}{hint}"


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel]:
    """The nested pydantic model a location points into (list indexes skipped)."""
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            break
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            break
        model = nested[0]
    return model


def _mask_url(url: str) -> str:
    """Hide a password written into a URL before it reaches a message."""
    try:
        parts = urlsplit(url)
        if parts.password:
            host = parts.hostname or ""
            netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparseable URL>"
    return url


def _kind_problems(data: Mapping[str, Any], known_kinds: Iterable[str]) -> list[tuple[Loc, str]]:
    kinds = sorted({k.lower() for k in known_kinds})
    problems: list[tuple[Loc, str]] = []
    providers = data.get("providers")
    for index, item in enumerate(providers if isinstance(providers, list) else []):
        if not isinstance(item, dict):
            continue
        kind = item.get("kind")
        if isinstance(kind, str) and kind and kind.lower() not in kinds:
            close = difflib.get_close_matches(kind.lower(), kinds, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            message = f"unknown provider kind {kind!r}; {hint}valid kinds: {', '.join(kinds)}"
            problems.append((("providers", index, "kind"), message))
    return problems


def _env_problems(data: Mapping[str, Any], environ: Mapping[str, str]) -> list[tuple[Loc, str]]:
    """Unset credential variables of enabled providers, and the LLM's key."""
    problems: list[tuple[Loc, str]] = []

    def require(loc: Loc, variable: Any, needed_for: str) -> None:
        if not isinstance(variable, str) or not _ENV_VAR.match(variable):
            return  # an invalid name is a field error already; never echo it
        state = "is not set" if variable not in environ else "is empty"
        if not str(environ.get(variable, "")).strip():
            problems.append((loc, f"environment variable {variable} {state} ({needed_for})"))

    providers = data.get("providers")
    for index, item in enumerate(providers if isinstance(providers, list) else []):
        if not isinstance(item, dict) or item.get("enabled", True) is False:
            continue
        credentials = item.get("credentials")
        name = item.get("name") if isinstance(item.get("name"), str) else f"#{index}"
        if isinstance(credentials, dict):
            for credential, variable in credentials.items():
                loc = ("providers", index, "credentials", credential)
                require(loc, variable, f"provider {name} credential {credential}")

    llm = data.get("llm")
    if isinstance(llm, dict):
        provider, key_env = llm.get("provider", "none"), llm.get("api_key_env")
        if provider == "groq":
            where = ("llm", "api_key_env") if key_env is not None else ("llm", "provider")
            require(where, key_env if key_env is not None else "GROQ_API_KEY", "llm groq API key")
        elif provider == "openai-compatible" and key_env is not None:
            require(("llm", "api_key_env"), key_env, "llm API key")
    return problems


def _sorted_unique(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    unique = list(dict.fromkeys(issues))
    return sorted(unique, key=lambda i: (i.line is None, i.line or 0, i.field))
