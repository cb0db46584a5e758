"""The number guard: every number in the model's text must be one code computed.

A reviewer trusts the figures in an explanation because code computed them. A model
that writes a number of its own (a sum, a percentage it worked out, a figure from its
training data) would put an unchecked number beside checked ones, so such a reply is
rejected and the template is shown instead.

The rule, in full (docs/llm.md explains it with examples):

* **Allowed values** are the request's figures, and every number that appears in text
  code wrote for the request (figure displays, evidence, target, kind, template), other
  than digits inside identifiers (the 24 of ``p4d.24xlarge`` is not a figure).
* A number is **written** as digits with optional thousands commas and decimals
  (``1,234.5``), optionally followed by a multiplier (``k``, ``K``, ``M``, ``B``, ``bn``,
  or the words ``thousand``, ``million``, ``billion``) or a percent sign (``%``,
  ``percent``). Sign and currency symbols are ignored (a decrease may be written as a
  positive "drops by 12%").
* A written number **matches** an allowed value when it equals the value rounded to the
  precision it is written with (``1.2k`` stands for 1,150-1,250, so it matches 1,234.5;
  ``1,200`` claims a precision of one and does not). It must keep at least two
  significant digits unless it is exact (``1k`` does not match 1,234.5; ``3`` matches 3).
* A percentage matches a figure whose unit is a ratio (``ratio``, ``fraction``, ``share``:
  ``23.5%`` ↔ 0.235) or a percentage (``%``, ``percent``, ``pct``), or a percentage
  written in code's own text; a plain number never matches with a ``%`` added.
* **Small counts**: a bare integer from 0 to ``small_integer_max`` (10 by default, no
  decimals, multiplier, percent or currency) is allowed, for "3 steps" or "2 replicas".
  Number words up to ten are allowed for the same reason; larger number words
  ("twelve", "hundred", "thousands") are not, since they would slip past the digits rule.
* **Identifiers** are not numbers: any word that starts with a letter, holds a digit
  and appears in code's text for the request (``g6.xlarge``, ``H100``, ``max_num_seqs=256``), and
  percentile names (``p95``, ``P99.9``). Digits inside an identifier that code did not
  give are checked like any other number (``H200``, if only ``H100`` was given, fails).

Example::

    unsupported_numbers("Saves $1.2k a month (23% less).", request)  # [] or ['23%', ...]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from optiinfra.llm.models import PERCENT_UNITS, RATIO_UNITS, ExplanationRequest

__all__ = ["GuardRules", "WrittenNumber", "find_numbers", "unsupported_numbers"]

_MULTIPLIERS = {
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "B": 1e9,
    "bn": 1e9,
    "thousand": 1e3,
    "million": 1e6,
    "billion": 1e9,
}

# Digits not preceded by another digit; "1,234.5", "12", ".5". The suffix group takes a
# glued multiplier only when no letter follows it ("5M/month" yes, "30ms" no), a spaced
# multiplier word, or a percent sign / word.
_NUMBER = re.compile(
    r"(?<!\d)(?P<currency>[$€£¥])?"
    r"(?:(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.(?P<frac>\d+))?|\.(?P<bare_frac>\d+))"
    r"(?:(?P<glued>k|K|M|B|bn)(?![A-Za-z])"
    r"|\s?(?P<word>thousand|million|billion)\b"
    r"|\s?(?P<percent>%|percent\b|per\s+cent\b))?"
)
_NUMBER_WORDS = re.compile(
    r"\b(?:eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|"
    r"twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
    r"hundreds?|thousands?|millions?|billions?|trillions?|dozens?)\b",
    re.IGNORECASE,
)
_PERCENTILE = re.compile(r"\b[pP]\d{1,2}(?:\.\d+)?\b")
_WORD = re.compile(r"[A-Za-z][\w.\-/:=]*[A-Za-z0-9]")
_REL_TOLERANCE = 1e-9


@dataclass(frozen=True)
class GuardRules:
    """The guard's one adjustable rule: how large a bare count may be."""

    small_integer_max: int = 10


@dataclass(frozen=True)
class WrittenNumber:
    """A number as it appears in text: its value, its precision, and how it was marked."""

    text: str
    value: float  # absolute, multiplier applied
    last_digit: float  # the value of one unit in the last written digit
    significant_digits: int
    percent: bool
    bare_integer: bool  # no decimals, multiplier, percent or currency


@dataclass(frozen=True)
class _Allowed:
    value: float
    percent: bool


def find_numbers(text: str) -> list[WrittenNumber]:
    """Every number written with digits in ``text``, in order."""
    found = []
    for match in _NUMBER.finditer(text):
        integer = (match.group("int") or "").replace(",", "")
        fraction = match.group("frac") or match.group("bare_frac") or ""
        multiplier_name = match.group("glued") or match.group("word")
        multiplier = _MULTIPLIERS[multiplier_name] if multiplier_name else 1.0
        mantissa = float(f"{integer or '0'}.{fraction or '0'}")
        digits = (integer + fraction).lstrip("0")
        found.append(
            WrittenNumber(
                text=match.group(0).strip(),
                value=mantissa * multiplier,
                last_digit=(10.0 ** -len(fraction)) * multiplier,
                significant_digits=len(digits),
                percent=match.group("percent") is not None,
                bare_integer=not (fraction or multiplier_name or match.group("percent"))
                and match.group("currency") is None,
            )
        )
    return found


def unsupported_numbers(
    text: str, request: ExplanationRequest, rules: GuardRules | None = None
) -> list[str]:
    """The numbers in ``text`` that no figure or code-written text supports, as written.

    An empty list means the text passes. Spelled-out numbers above ten are reported too.
    """
    rules = rules or GuardRules()
    sources = _code_texts(request)
    identifiers = _identifiers(sources)
    masked = _mask(text, identifiers)
    allowed = _allowed_values(request, [_mask(source, identifiers) for source in sources])
    offending = []
    for number in find_numbers(masked):
        if number.bare_integer and number.value <= rules.small_integer_max:
            continue
        if not any(_matches(number, value) for value in allowed):
            offending.append(number.text)
    without_numbers = _NUMBER.sub(" ", masked)
    offending.extend(match.group(0) for match in _NUMBER_WORDS.finditer(without_numbers))
    return offending


def _matches(number: WrittenNumber, allowed: _Allowed) -> bool:
    if number.percent != allowed.percent:
        return False
    target = abs(allowed.value)
    difference = abs(number.value - target)
    if difference <= _REL_TOLERANCE * max(1.0, target):
        return True
    if number.significant_digits < 2:
        return False
    return difference <= number.last_digit / 2 * (1 + _REL_TOLERANCE)


def _code_texts(request: ExplanationRequest) -> list[str]:
    """Text code wrote for this request: its numbers and identifiers may be repeated."""
    texts = [request.kind, request.target, *request.evidence]
    texts += [request.template.summary, request.template.rationale, *request.template.risks]
    for name, figure in request.figures.items():
        texts += [name, figure.unit, figure.rendered()]
    return texts


def _allowed_values(request: ExplanationRequest, sources: Iterable[str]) -> list[_Allowed]:
    allowed = []
    for figure in request.figures.values():
        unit = figure.unit.strip().lower()
        allowed.append(_Allowed(figure.value, percent=False))
        if unit in RATIO_UNITS:
            allowed.append(_Allowed(figure.value * 100.0, percent=True))
        elif unit in PERCENT_UNITS:
            allowed.append(_Allowed(figure.value, percent=True))
    for text in sources:
        allowed += [_Allowed(n.value, n.percent) for n in find_numbers(text)]
    return allowed


def _identifiers(sources: Iterable[str]) -> list[str]:
    words = {
        word for text in sources for word in _WORD.findall(text) if any(c.isdigit() for c in word)
    }
    return sorted(words, key=len, reverse=True)


def _mask(text: str, identifiers: list[str]) -> str:
    for identifier in identifiers:
        pattern = rf"(?<![A-Za-z0-9]){re.escape(identifier)}(?![A-Za-z0-9])"
        text = re.sub(pattern, " ", text)
    return _PERCENTILE.sub(" ", text)
