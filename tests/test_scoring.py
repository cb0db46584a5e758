"""Exact match and token F1 on constructed answers, including the empty edge cases."""

from __future__ import annotations

import pytest

from optiinfra.scoring import exact_match, normalise_answer, token_f1


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Pacific Ocean.", "pacific ocean"),
        ("  An   apple, a day ", "apple day"),
        ("1,000", "1000"),
        ("Theatre", "theatre"),  # "the" inside a word stays
        ("", ""),
    ],
)
def test_normalisation_follows_squad(text: str, normal: str) -> None:
    assert normalise_answer(text) == normal


def test_exact_match_ignores_case_punctuation_and_articles() -> None:
    assert exact_match("The Pacific Ocean!", "pacific ocean") == 1.0
    assert exact_match("Sydney", "Canberra") == 0.0
    assert exact_match("Canberra, Australia", "Canberra") == 0.0


def test_exact_match_accepts_aliases() -> None:
    assert exact_match("Kiev", "Kyiv", aliases=["Kiev"]) == 1.0
    assert exact_match("Kiev", "Kyiv") == 0.0


def test_exact_match_on_empty_strings() -> None:
    assert exact_match("", "") == 1.0
    assert exact_match("", "Paris") == 0.0
    assert exact_match("Paris", "") == 0.0
    assert exact_match("the", "") == 1.0  # only an article: normalises to empty


def test_token_f1_partial_overlap() -> None:
    # "city of paris" vs "paris": precision 1/3, recall 1 -> F1 0.5
    assert token_f1("the city of Paris", "Paris") == pytest.approx(0.5)
    # "leonardo" vs "leonardo da vinci": precision 1, recall 1/3 -> 0.5
    assert token_f1("Leonardo", "Leonardo da Vinci") == pytest.approx(0.5)
    assert token_f1("Mount Everest", "Everest") == pytest.approx(2 / 3)


def test_token_f1_counts_repeated_tokens_once_each() -> None:
    # "new new york" vs "new york": common = 2 (new x1, york x1); P 2/3, R 1 -> 0.8
    assert token_f1("new new york", "new york") == pytest.approx(0.8)


def test_token_f1_extremes_and_aliases() -> None:
    assert token_f1("Paris", "paris.") == 1.0
    assert token_f1("London", "Paris") == 0.0
    assert token_f1("Kiev", "Kyiv", aliases=["Kiev"]) == 1.0


def test_token_f1_on_empty_strings() -> None:
    assert token_f1("", "") == 1.0
    assert token_f1("", "Paris") == 0.0
    assert token_f1("Paris", "") == 0.0
    assert token_f1("an", "the") == 1.0  # both normalise to nothing
