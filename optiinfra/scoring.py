"""Answer scores for quality probes: exact match and token F1, SQuAD-style.

Quality probes ask a deployment questions with known short answers and score each reply.
Both scores compare *normalised* text, as the SQuAD v1.1 evaluation does: lower case,
punctuation removed, the articles "a", "an", "the" removed, whitespace collapsed. So
"The Pacific Ocean." matches "pacific ocean", and "1,000" matches "1000". Scores are
floats in [0, 1] so that they average directly into a ``QualityEvent``.

Example::

    >>> exact_match("Paris.", "paris")
    1.0
    >>> round(token_f1("the city of Paris", "Paris"), 3)
    0.5
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD v1.1's rules)."""
    text = text.lower().translate(_PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(answer: str, reference: str, aliases: Iterable[str] = ()) -> float:
    """1.0 when the normalised answer equals the normalised reference or any alias."""
    got = normalise_answer(answer)
    return float(any(got == normalise_answer(ref) for ref in (reference, *aliases)))


def token_f1(answer: str, reference: str, aliases: Iterable[str] = ()) -> float:
    """Harmonic mean of token precision and recall, best over reference and aliases.

    Two empty answers agree (1.0); an empty answer against a non-empty reference, or the
    reverse, scores 0.0 — SQuAD v2's convention, so a blank reply is never rewarded.
    """
    return max(_f1(answer, ref) for ref in (reference, *aliases))


def _f1(answer: str, reference: str) -> float:
    got = normalise_answer(answer).split()
    want = normalise_answer(reference).split()
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision = common / len(got)
    recall = common / len(want)
    return 2 * precision * recall / (precision + recall)
