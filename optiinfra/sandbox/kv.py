"""The KV-cache block pool of one simulated engine, with automatic prefix caching.

It keeps the accounting vLLM's block manager keeps, without the tensors: the cache is
``num_blocks`` blocks of ``block_size`` tokens. A running request holds private blocks
(its partial and decode blocks) and references to cached blocks (full prompt blocks,
known by the hash of their content and everything before them). A cached block nobody
references stays in the cache, evictable in least-recently-used order, until an
allocation needs its space: that is how a later request with the same prefix can skip
recomputing it.

``free`` counts blocks no running request references (unreferenced cached blocks
included); usage is ``1 - free / num_blocks``, what ``vllm:kv_cache_usage_perc`` shows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class BlockPool:
    """Block accounting for one engine. All counts are in blocks."""

    __slots__ = ("_lru", "_refs", "block_size", "caching", "free", "num_blocks")

    def __init__(self, num_blocks: int, block_size: int = 16, caching: bool = True) -> None:
        if num_blocks < 1:
            raise ValueError("a KV cache needs at least one block")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.caching = caching
        self.free = num_blocks
        self._refs: dict[int, int] = {}  # block hash -> running requests referencing it
        self._lru: OrderedDict[int, None] = OrderedDict()  # unreferenced cached hashes

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    @property
    def usage(self) -> float:
        return 1.0 - self.free / self.num_blocks

    @property
    def cached_blocks(self) -> int:
        return len(self._refs)

    def match_prefix(self, hashes: Sequence[int]) -> int:
        """How many leading blocks of ``hashes`` are in the cache right now."""
        if not self.caching:
            return 0
        count = 0
        refs = self._refs
        for h in hashes:
            if h not in refs:
                break
            count += 1
        return count

    def unreferenced(self, hashes: Sequence[int]) -> int:
        """How many of these cached blocks nobody references (referencing them uses free
        blocks)."""
        refs = self._refs
        return sum(1 for h in hashes if refs[h] == 0)

    def reference(self, hashes: Sequence[int]) -> None:
        """A request starts using these cached blocks (all must be cached)."""
        for h in hashes:
            refs = self._refs[h]
            if refs == 0:
                del self._lru[h]
                self.free -= 1
            self._refs[h] = refs + 1

    def allocate(self, count: int) -> bool:
        """Take ``count`` new private blocks, evicting unreferenced cached ones if needed."""
        if count <= 0:
            return True
        if count > self.free:
            return False
        spare = self.free - len(self._lru)  # neither referenced nor cached
        lru, refs = self._lru, self._refs
        for _ in range(count - spare):
            h, _none = lru.popitem(last=False)
            del refs[h]
        self.free -= count
        return True

    def release_private(self, count: int) -> None:
        self.free += count

    def publish(self, hashes: Sequence[int]) -> int:
        """A request's private full prompt blocks become cached, referenced by it.

        Returns how many private blocks that request no longer holds (all of
        ``hashes``). A hash that another request published meanwhile is shared instead,
        and the duplicate private block is returned to the pool.
        """
        if not self.caching:
            return 0
        refs = self._refs
        for h in hashes:
            current = refs.get(h)
            if current is None:
                refs[h] = 1
            else:
                if current == 0:
                    del self._lru[h]
                    self.free -= 1
                refs[h] = current + 1
                self.free += 1  # the duplicate private block goes back
        return len(hashes)

    def dereference(self, hashes: Sequence[int]) -> None:
        """A request stops using these cached blocks (finished or preempted)."""
        refs, lru = self._refs, self._lru
        for h in hashes:
            left = refs[h] - 1
            refs[h] = left
            if left == 0:
                lru[h] = None
                self.free += 1

    def resize(self, num_blocks: int) -> None:
        """Change capacity (a reconfiguration); callers preempt first if it shrinks."""
        in_use = self.num_blocks - self.free
        if num_blocks < in_use:
            raise ValueError(f"cannot shrink to {num_blocks} blocks with {in_use} in use")
        self.free += num_blocks - self.num_blocks
        self.num_blocks = num_blocks
        while len(self._lru) > self.free:
            h, _none = self._lru.popitem(last=False)
            del self._refs[h]
