"""Prompt texts of a given length whose shared prefixes are really shared.

The sandbox's servers count tokens as whitespace-separated words, so a request of N
prompt tokens is sent as a text of N words. Which words matters for one thing only: a
prefix cache. Two Mooncake requests whose ``hash_ids`` start with the same blocks must
start with the same words, and requests that share nothing must share no prefix (not
even a first word), or a prefix cache would hit where the trace says it cannot.

So each 512-word block of a Mooncake prompt is a fixed text derived from its block id
(word ``j`` of block ``b`` is ``b<b hex>.<j hex>``), the last block of a request cut to
its length; words beyond the request's blocks, and every word of a request without
prefix information (Azure traces, synthetic load), are the request's own
(``u<salt>-<request hex>-<chunk hex>.<j hex>``). Block texts are made by one ``str.replace``
on a template and kept in an LRU cache, so a 30,000-word prompt costs a join of ~60
cached strings.

Prompts are cut at ``max_words`` (default :data:`DEFAULT_MAX_PROMPT_WORDS`, 32,768): 828
Mooncake requests are longer (up to 126,195 tokens), and sending 100k-word bodies would
measure the client rather than the server. The cut keeps the prefix, so sharing is kept.

Example::

    builder = PromptBuilder()
    a = builder.build(1000, request_key=1, prefix_blocks=[0, 7])
    b = builder.build(600, request_key=2, prefix_blocks=[0, 9])
    a.split()[:512] == b.split()[:512]      # True: block 0 is shared
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import accumulate

from optiinfra.sandbox.load.schedule import Schedule
from optiinfra.sandbox.traces import MOONCAKE_BLOCK_TOKENS

#: Longest prompt sent, in words (tokens); longer requests are cut to this.
DEFAULT_MAX_PROMPT_WORDS = 32_768

_MARK = "@"


class PromptBuilder:
    """Builds prompt texts of exact word counts; cheap enough for hundreds per second."""

    def __init__(
        self,
        max_words: int = DEFAULT_MAX_PROMPT_WORDS,
        *,
        block_words: int = MOONCAKE_BLOCK_TOKENS,
        salt: str = "",
        cached_blocks: int = 4096,
    ) -> None:
        if max_words < 1 or block_words < 1:
            raise ValueError("max_words and block_words must be at least 1")
        self.max_words = max_words
        self.block_words = block_words
        self.salt = salt
        positions = [f"{j:x}" for j in range(block_words)]
        self._template = " ".join(_MARK + p for p in positions)
        # End offset (exclusive) of word j in the template with an empty tag.
        self._bare_ends = [end + j for j, end in enumerate(accumulate(len(p) for p in positions))]
        self._block_text = lru_cache(maxsize=cached_blocks)(self._fill)

    def words(self, prompt_tokens: int) -> int:
        """How many words a request of ``prompt_tokens`` is sent with (after the cap)."""
        return max(0, min(int(prompt_tokens), self.max_words))

    def build(
        self, n_words: int, request_key: int, prefix_blocks: Sequence[int] | None = None
    ) -> str:
        """A text of ``min(n_words, max_words)`` words: the prefix blocks' words first,
        then words unique to ``request_key``."""
        remaining = self.words(n_words)
        pieces: list[str] = []
        for block in prefix_blocks if prefix_blocks is not None else ():
            if remaining <= 0:
                break
            pieces.append(self._cut(self._block_text(f"b{int(block):x}."), remaining))
            remaining -= min(remaining, self.block_words)
        chunk = 0
        while remaining > 0:
            tag = f"u{self.salt}-{int(request_key):x}-{chunk:x}."
            pieces.append(self._cut(self._fill(tag), remaining))
            remaining -= min(remaining, self.block_words)
            chunk += 1
        return " ".join(pieces)

    def for_request(self, plan: Schedule, i: int) -> str:
        """The prompt of request ``i`` of ``plan`` (its index is its unique key)."""
        blocks = plan.prefix_blocks(i)
        return self.build(
            int(plan.prompt_tokens[i]), i, None if blocks is None else blocks.tolist()
        )

    def _fill(self, tag: str) -> str:
        return self._template.replace(_MARK, tag)

    def _cut(self, text: str, n_words: int) -> str:
        """The first ``n_words`` words of a block text made with a tag of ``len(tag)``."""
        if n_words >= self.block_words:
            return text
        tag_len = (len(text) - self._bare_ends[-1]) // self.block_words
        return text[: self._bare_ends[n_words - 1] + n_words * tag_len]
