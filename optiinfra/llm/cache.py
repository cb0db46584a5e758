"""An on-disk cache of accepted model replies, so an unchanged question costs nothing.

Agents run hourly and often explain the same recommendation with the same figures
again; a cache hit answers without a request and without tokens. The key is a SHA-256
of the provider, base URL, model, call parameters, prompt version and the exact
messages, so any change in figures or wording is a miss. Only replies that passed
validation and the number guard are stored, and a hit is validated and guarded again
before use (a hand-edited or corrupt file is just a miss).

Files are ``<cache_dir>/<key[:2]>/<key>.json``, written atomically (a temporary file
renamed into place), holding the reply, the model and the tokens it first cost; never
a credential. The cache never raises: a read or write problem is logged and ignored.

Example::

    cache = ResponseCache(Path("~/.optiinfra/llm-cache").expanduser())
    key = cache_key("groq", "https://api.groq.com", "llama-3.3-70b-versatile", messages, {})
    cache.get(key)  # None, or a CachedReply
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from optiinfra.llm.models import ModelReply, TokenUsage
from optiinfra.llm.prompt import PROMPT_VERSION
from optiinfra.settings import get_settings

__all__ = ["CachedReply", "ResponseCache", "cache_key", "default_cache_dir"]

log = logging.getLogger(__name__)


class CachedReply(BaseModel):
    """One stored reply (what a cache file holds)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    provider: str
    model: str
    reply: ModelReply
    usage: TokenUsage | None = None


def default_cache_dir() -> Path:
    """``<OPTIINFRA_HOME>/llm-cache``: where the optimize flow keeps replies."""
    return get_settings().home / "llm-cache"


def cache_key(
    provider: str,
    base_url: str,
    model: str,
    messages: list[dict[str, str]],
    params: dict[str, Any],
) -> str:
    """The hex SHA-256 naming the reply to exactly this call."""
    material = {
        "prompt_version": PROMPT_VERSION,
        "provider": provider,
        "base_url": base_url,
        "model": model,
        "params": params,
        "messages": messages,
    }
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """Replies by key, one JSON file each, under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r})"

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedReply | None:
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("LLM cache: cannot read %s: %s", path, exc)
            return None
        try:
            entry = CachedReply.model_validate_json(text)
        except ValidationError:
            log.warning("LLM cache: ignoring malformed entry %s", path)
            return None
        return entry if entry.key == key else None

    def put(self, entry: CachedReply) -> None:
        path = self.path(entry.key)
        temporary: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(entry.model_dump_json(indent=1))
            os.replace(temporary, path)
        except OSError as exc:
            log.warning("LLM cache: cannot write %s: %s", path, exc)
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
