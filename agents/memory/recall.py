"""Recall inside the agent graphs: features per proposal, nearest outcomes, adjustment.

:class:`MemoryRecall` is what ``AgentDeps.recall`` holds in an optimize run. It is
picklable (a URL and numbers), because the agents may run in forked worker processes:
each process opens the decision memory itself, briefly, under the memory's
inter-process lock (Qdrant local mode allows one client per directory). A memory that
was empty when the run started is never opened again.

:func:`recall_and_adjust` is the body of the shared ``recall`` node.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agents.common.proposals import Proposal
from agents.context import FleetContext
from agents.memory.adjust import adjust
from agents.memory.features import DecisionFeatures, features_for
from agents.memory.outcomes import MIN_SIMILARITY, RecalledOutcome, recall_similar

if TYPE_CHECKING:
    from agents.coordinator import PlanDraft
    from optiinfra.runtime import Runtime
    from optiinfra.store.memory import DecisionMemory

#: Where a proposal carries its features (the rollout reads them back to remember).
FEATURES_KEY = "decision_features"


class MemoryRecall:
    """``AgentDeps.recall`` backed by the decision memory at ``url``.

    Called with a proposal that carries ``evidence["decision_features"]``; returns the
    similar past outcomes as dicts (:class:`RecalledOutcome`). :meth:`session` keeps one
    client open for a batch of calls (one agent's proposals).
    """

    def __init__(
        self,
        url: str,
        *,
        lock_timeout: float = 120.0,
        k: int = 5,
        min_similarity: float = MIN_SIMILARITY,
        empty: bool = False,
    ) -> None:
        self.url = url
        self.lock_timeout = lock_timeout
        self.k = k
        self.min_similarity = min_similarity
        #: The memory held nothing when the run began: nothing to recall, nothing opened.
        self.empty = empty
        self._memory: DecisionMemory | None = None
        self._opening = threading.Lock()

    @classmethod
    def for_runtime(cls, runtime: Runtime, **kwargs: Any) -> MemoryRecall:
        """Open the runtime's memory once (creating its collection), note whether it is
        empty, and close it again; raises ``StoreError`` when it cannot be opened."""
        memory = runtime.open_memory()
        try:
            empty = memory.count() == 0
        finally:
            memory.close()
        return cls(
            runtime.memory_url,
            lock_timeout=runtime.settings.lock_timeout_seconds,
            empty=empty,
            **kwargs,
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # An open memory holds locks: each process opens its own.
        del state["_memory"], state["_opening"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._memory = None
        self._opening = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryRecall({self.url!r}, empty={self.empty})"

    def memory(self) -> DecisionMemory:
        """This process's handle on the memory (threads of one process share it)."""
        with self._opening:
            if self._memory is None:
                from optiinfra.store.memory import open_memory

                self._memory = open_memory(self.url, lock_timeout=self.lock_timeout)
            return self._memory

    def session(self) -> AbstractContextManager[Any]:
        """One client for a block of calls (nothing at all when the memory was empty)."""
        if self.empty:
            return nullcontext()
        return self.memory().hold()

    def __call__(self, proposal: Proposal) -> list[dict[str, Any]]:
        raw = proposal.evidence.get(FEATURES_KEY)
        if self.empty or not raw:
            return []
        features = DecisionFeatures.model_validate(raw)
        found = recall_similar(
            self.memory(), features, k=self.k, min_similarity=self.min_similarity
        )
        return [r.model_dump(mode="json") for r in found]


def recall_and_adjust(
    proposals: Sequence[Proposal],
    context: FleetContext,
    recall: Callable[[Proposal], list[dict[str, Any]]],
) -> tuple[list[Proposal], list[str]]:
    """Each proposal with its features in evidence, adjusted by its similar outcomes.

    Memory is advisory: a proposal whose features or recall fail is kept unadjusted,
    with a note. Proposals :func:`~agents.memory.adjust.adjust` drops are left out, with
    a note saying why.
    """
    kept: list[Proposal] = []
    notes: list[str] = []
    with _session(recall, notes) as usable:
        for proposal in proposals:
            try:
                features = features_for(proposal, context)
            except Exception as exc:  # a bad row must not cost the proposal
                notes.append(f"decision features failed for {proposal.target}: {exc}")
                kept.append(proposal)
                continue
            evidence = {**proposal.evidence, FEATURES_KEY: features.model_dump(mode="json")}
            proposal = proposal.model_copy(update={"evidence": evidence})
            if not usable:
                kept.append(proposal)
                continue
            try:
                found = recall(proposal)
            except Exception as exc:  # memory is advisory: never lose a proposal over it
                notes.append(f"memory recall failed for {proposal.target}: {exc}")
                kept.append(proposal)
                continue
            recalled = _parsed(found, proposal, notes)
            adjusted = adjust(proposal, recalled)
            if adjusted.proposal is None:
                notes.append(adjusted.reason)
            else:
                kept.append(adjusted.proposal)
    return kept, notes


@contextmanager
def _session(recall: Callable[..., Any], notes: list[str]) -> Iterator[bool]:
    """The recall's batch session when it has one; False when it cannot be opened."""
    opener = getattr(recall, "session", None)
    if opener is None:
        yield True
        return
    try:
        session = opener()
        session.__enter__()
    except Exception as exc:
        notes.append(f"decision memory unavailable, proposals not adjusted: {exc}")
        yield False
        return
    try:
        yield True
    finally:
        session.__exit__(None, None, None)


def _parsed(
    found: Sequence[Mapping[str, Any]], proposal: Proposal, notes: list[str]
) -> list[RecalledOutcome]:
    parsed: list[RecalledOutcome] = []
    for item in found:
        try:
            parsed.append(RecalledOutcome.model_validate(item))
        except ValidationError:
            notes.append(f"memory returned an unreadable outcome for {proposal.target}; ignored")
    return parsed


def similar_outcome_lines(
    plans: Sequence[PlanDraft], plan_ids: Mapping[int, str]
) -> dict[str, list[str]]:
    """Plan id → one line per similar past outcome, for the approval form."""
    lines: dict[str, list[str]] = {}
    for plan in plans:
        plan_id = plan_ids.get(plan.rank)
        if not plan_id:
            continue
        for proposal in plan.proposals:
            for item in proposal.evidence.get("similar_outcomes") or []:
                lines.setdefault(plan_id, []).append(outcome_line(item))
            step = proposal.evidence.get("first_step_percent")
            if step is not None:
                lines.setdefault(plan_id, []).append(
                    f"first rollout step lowered to {step:g}%: "
                    f"{proposal.evidence.get('first_step_reason', '')}"
                )
    return lines


def outcome_line(item: Mapping[str, Any]) -> str:
    """One recalled outcome as a line of text."""
    what = f"{item.get('kind')} on {item.get('target')} (plan {item.get('plan_id')})"
    if item.get("rolled_back"):
        result = f"rolled back at a first step of {item.get('first_step_percent'):g}%"
        if item.get("reason"):
            result += f": {item['reason']}"
    else:
        realised = item.get("realised_saving_usd_per_month")
        expected = item.get("expected_saving_usd_per_month")
        result = "completed"
        if realised is not None:
            result += f", saved ${realised:,.0f}/month"
            if expected:
                result += f" of ${expected:,.0f} expected"
    quality = item.get("quality_relative")
    if quality is not None:
        result += f"; quality {quality:+.0%}"
    return f"{item.get('similarity', 0):.2f} similar: {what} {result}"
