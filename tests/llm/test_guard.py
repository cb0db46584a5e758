"""The number guard: which written numbers a reply may contain."""

from __future__ import annotations

import pytest

from optiinfra.llm import (
    ExplanationRequest,
    Figure,
    GuardRules,
    TemplateText,
    find_numbers,
    unsupported_numbers,
)


def request(**figures: Figure) -> ExplanationRequest:
    return ExplanationRequest(
        kind="right_sizing",
        target="deployment chat-70b on p4d.24xlarge (8x A100)",
        figures=figures,
        evidence=["p95 TTFT over 14 days stayed below the SLO"],
        template=TemplateText(summary="Right-size chat-70b."),
    )


SAVINGS = request(
    savings=Figure(value=1234.5, unit="USD/month", display="$1,234.50/month"),
    utilisation=Figure(value=0.2349, unit="ratio"),
    drop=Figure(value=-12.5, unit="%"),
    replicas=Figure(value=24, unit="replicas"),
)


@pytest.mark.parametrize(
    "text",
    [
        "It saves $1,234.50/month.",
        "It saves 1234.5 USD a month.",
        "It saves about $1.2k a month.",  # rounded, with a suffix
        "It saves $1,235 a month.",  # rounded to whole dollars
        "Utilisation is 23.5%.",  # a ratio written as a percentage
        "Utilisation is 23% of capacity.",
        "Utilisation is 0.23.",
        "Latency drops by 12.5%.",  # sign dropped in words
        "Latency changes by -12.5 percent.",
        "It keeps 24 replicas.",
        "The rollout takes 3 steps and two bake periods.",  # small counts
        "p95 TTFT over 14 days stayed low on p4d.24xlarge.",  # identifiers, evidence
        "The fleet runs chat-70b on 8x A100.",
    ],
)
def test_supported_numbers_pass(text: str) -> None:
    assert unsupported_numbers(text, SAVINGS) == []


@pytest.mark.parametrize(
    ("text", "offending"),
    [
        ("It saves $14,814 a year.", ["$14,814"]),  # derived (12 x monthly)
        ("It saves 1k a month.", ["1k"]),  # one significant digit, not exact
        ("It saves $1,200 a month.", ["$1,200"]),  # claims a precision it lacks
        ("Utilisation is 0.2349%.", ["0.2349%"]),  # a ratio is not a percentage as is
        ("It saves 37% of spend.", ["37%"]),
        ("Move to 17 replicas.", ["17"]),
        ("Move to twelve replicas.", ["twelve"]),  # spelled-out numbers above ten
        ("Thousands of requests benefit.", ["Thousands"]),
        ("Use H200 instead.", ["200"]),  # digits in an identifier code never gave
        ("Values: 10,50 and .5", ["50", ".5"]),
        ("Expected by 2027.", ["2027"]),
    ],
)
def test_invented_numbers_are_reported(text: str, offending: list[str]) -> None:
    assert unsupported_numbers(text, SAVINGS) == offending


def test_the_small_integer_limit_is_adjustable() -> None:
    text = "Roll out in 4 steps."
    assert unsupported_numbers(text, SAVINGS, GuardRules(small_integer_max=3)) == ["4"]
    assert unsupported_numbers(text, SAVINGS, GuardRules(small_integer_max=4)) == []


def test_written_numbers_carry_their_precision() -> None:
    (number,) = find_numbers("costs $4.5M/month")
    assert number.value == pytest.approx(4.5e6)
    assert number.last_digit == pytest.approx(1e5)
    assert number.significant_digits == 2
    assert not number.percent and not number.bare_integer
    (spaced,) = find_numbers("1.25 million tokens")
    assert spaced.value == pytest.approx(1.25e6)
    (millis,) = find_numbers("30ms")
    assert millis.value == 30 and millis.bare_integer  # "ms" is a unit, not a multiplier
