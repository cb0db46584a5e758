"""Learning from outcomes: decision features, remembered outcomes, adjusted proposals.

``docs/learning.md`` says what the decision vector is and why nearness in it means a
similar decision. The rollout remembers what happened with::

    from agents.memory import DecisionFeatures, OutcomeRecord, remember_outcome

    remember_outcome(memory, DecisionFeatures(**rec.evidence["decision_features"]), outcome)
"""

from agents.memory.adjust import Adjusted, adjust, adjust_proposal
from agents.memory.features import (
    FEATURES_VERSION,
    DecisionFeatures,
    decision_vector,
    features_for,
    similarity,
)
from agents.memory.outcomes import (
    MIN_SIMILARITY,
    OutcomeRecord,
    RecalledOutcome,
    recall_similar,
    remember_outcome,
)
from agents.memory.recall import MemoryRecall, recall_and_adjust, similar_outcome_lines

__all__ = [
    "FEATURES_VERSION",
    "MIN_SIMILARITY",
    "Adjusted",
    "DecisionFeatures",
    "MemoryRecall",
    "OutcomeRecord",
    "RecalledOutcome",
    "adjust",
    "adjust_proposal",
    "decision_vector",
    "features_for",
    "recall_and_adjust",
    "recall_similar",
    "remember_outcome",
    "similar_outcome_lines",
    "similarity",
]
