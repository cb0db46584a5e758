"""Decision memory (Qdrant: local mode by default, a server by URL).

See :mod:`.decisions` and ``docs/state-and-memory.md``.
"""

from optiinfra.store.locking import InterProcessLock
from optiinfra.store.memory.decisions import (
    COLLECTION,
    DECISION_VECTOR_SIZE,
    DecisionMemory,
    DecisionRecord,
    Recalled,
    open_memory,
    point_id,
)

__all__ = [
    "COLLECTION",
    "DECISION_VECTOR_SIZE",
    "DecisionMemory",
    "DecisionRecord",
    "InterProcessLock",
    "Recalled",
    "open_memory",
    "point_id",
]
