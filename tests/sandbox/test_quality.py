"""The sandbox's question set and degradation model: valid data, right facts where they can
be recomputed, prompt lookup, and measured accuracy matching the documented error rates."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter

import pytest

from optiinfra.catalog._tables import CatalogError
from optiinfra.sandbox.quality import (
    QAItem,
    QualityConfig,
    QualityError,
    QualityModel,
    bundled_items,
    error_probability,
    parse_qa,
    question_key,
)
from optiinfra.sandbox.spec import DeploymentSpec, EngineArgs
from optiinfra.scoring import exact_match

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"


@pytest.fixture(scope="module")
def model() -> QualityModel:
    return QualityModel()


def test_bundled_set_loads_and_is_valid() -> None:
    items = bundled_items()
    assert len(items) >= 200
    assert len({item.id for item in items}) == len(items)
    assert all(item.answer and item.question and item.category for item in items)
    assert all(re.fullmatch(r"[a-z]+-\d{3}", item.id) for item in items)
    categories = Counter(item.category for item in items)
    assert len(categories) >= 8 and min(categories.values()) >= 3


def test_no_question_contains_another(model: QualityModel) -> None:
    keys = [question_key(item.question) for item in model.items]
    for a in keys:
        assert not [b for b in keys if a != b and f" {a} " in f" {b} "]


_ARITHMETIC = {
    "plus": lambda a, b: a + b,
    "minus": lambda a, b: a - b,
    "multiplied by": lambda a, b: a * b,
    "divided by": lambda a, b: a / b,
    "percent of": lambda a, b: a * b / 100,
}


def test_answers_that_can_be_recomputed_are_right() -> None:
    checked = 0
    for item in bundled_items():
        q = item.question
        if m := re.fullmatch(
            r"What is (\d+) (plus|minus|multiplied by|divided by|percent of) (\d+)\?", q
        ):
            assert float(item.answer) == _ARITHMETIC[m[2]](int(m[1]), int(m[3])), item.id
        elif m := re.fullmatch(r"What is the square root of (\d+)\?", q):
            assert int(item.answer) ** 2 == int(m[1]), item.id
        elif m := re.fullmatch(r'What is the word "(\w+)" spelled backwards\?', q):
            assert item.answer == m[1][::-1], item.id
        elif m := re.fullmatch(r'How many letters are in the word "(\w+)"\?', q):
            assert int(item.answer) == len(m[1]), item.id
        elif m := re.fullmatch(r'How many times does the letter "(\w)" appear in "(\w+)"\?', q):
            assert int(item.answer) == m[2].count(m[1]), item.id
        elif m := re.fullmatch(r'How many vowels are in the word "(\w+)"\?', q):
            assert int(item.answer) == sum(ch in "aeiou" for ch in m[1]), item.id
        else:
            continue
        checked += 1
    assert checked >= 45


def _doc(*items: dict[str, object]) -> str:
    return json.dumps({"items": list(items)})


GOOD = {"id": "t-001", "category": "capital", "question": "Capital of France?", "answer": "Paris"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "qa-test.json: not valid JSON"),
        (json.dumps({"items": []}), "non-empty 'items' list"),
        (_doc(GOOD, {**GOOD, "question": "Other?"}), "items[1] (t-001): id: duplicate id"),
        (_doc({**GOOD, "answer": "  "}), "items[0] (t-001): answer: required"),
        (_doc({**GOOD, "hint": "x"}), "items[0] (t-001): unknown field(s) hint"),
        (_doc({**GOOD, "aliases": "Paris"}), "aliases: expected a list"),
        (_doc({**GOOD, "distractors": ["The Paris."]}), "distractors: 'The Paris.' is a right"),
        (
            _doc(GOOD, {**GOOD, "id": "t-002", "question": "capital of FRANCE"}),
            "same question as t-001",
        ),
    ],
)
def test_malformed_question_sets_are_refused_with_the_place(text: str, message: str) -> None:
    with pytest.raises(QualityError, match=re.escape(message)):
        parse_qa(text, "qa-test.json")


def test_an_item_without_any_plausible_wrong_answer_is_refused() -> None:
    lonely = QAItem("t-001", "colour", "What colour is the sky?", "blue")
    with pytest.raises(QualityError, match="t-001"):
        QualityModel([lonely])


def test_lookup_finds_a_question_inside_a_chat_prompt(model: QualityModel) -> None:
    prompt = (
        "system: You are a concise assistant.\n"
        "user: Answer in one word. Question: what is the CAPITAL of france\nAnswer:"
    )
    found = model.lookup(prompt)
    assert found is not None and found.answer == "Paris"
    item = next(i for i in model.items if i.category == "arithmetic")
    assert model.lookup(item.question.upper().rstrip("?")) == item


def test_lookup_respects_word_and_number_boundaries(model: QualityModel) -> None:
    assert model.lookup("What is the capital of Franceland?") is None
    item = next(i for i in model.items if i.question.startswith("What is") and "plus" in i.question)
    assert model.lookup(item.question.replace("?", "7?")) is None  # 57 -> 577
    assert model.lookup("Tell me a story about a dragon.") is None
    assert model.lookup("") is None


def test_unknown_prompts_get_no_answer(model: QualityModel) -> None:
    assert (
        model.answer("Write a haiku about GPUs.", QualityConfig(LLAMA_8B), random.Random(0)) is None
    )


def test_answers_are_deterministic_given_the_rng(model: QualityModel) -> None:
    config = QualityConfig(LLAMA_8B, quantization="int4")
    questions = [item.question for item in model.items]
    first = [model.answer(q, config, random.Random(7)) for q in questions]
    again = [model.answer(q, config, random.Random(7)) for q in questions]
    assert first == again
    rng_a, rng_b = random.Random(3), random.Random(3)
    assert [model.answer(q, config, rng_a) for q in questions] == [
        model.answer(q, config, rng_b) for q in questions
    ]


def test_right_answers_score_one_and_wrong_answers_zero(model: QualityModel) -> None:
    rng = random.Random(11)
    config = QualityConfig("meta-llama/Llama-3.2-1B", quantization="int4")  # many wrong
    outcomes = Counter()
    for item in model.items * 4:
        got = model.answer(f"Q: {item.question}", config, rng)
        assert got is not None and got.item_id == item.id
        assert exact_match(got.text, item.answer, item.aliases) == float(got.correct)
        outcomes[got.correct] += 1
    assert outcomes[True] > 100 and outcomes[False] > 100


def test_every_item_has_a_wrong_answer_that_scores_zero(model: QualityModel) -> None:
    rng = random.Random(5)
    for item in model.items:
        wrong = model.wrong_answer(item, rng)
        assert wrong and exact_match(wrong, item.answer, item.aliases) == 0.0


def _measured_error(model: QualityModel, config: QualityConfig, draws: int, seed: int) -> float:
    rng = random.Random(seed)
    wrong = 0
    for i in range(draws):
        item = model.items[i % len(model.items)]
        got = model.answer(f"user: {item.question}", config, rng)
        assert got is not None
        wrong += exact_match(got.text, item.answer, item.aliases) == 0.0
    return wrong / draws


@pytest.mark.parametrize(
    ("config", "documented"),
    [
        (QualityConfig(LLAMA_8B), 0.100),
        (QualityConfig(LLAMA_8B, quantization="int4"), 0.220),
        (QualityConfig(LLAMA_70B, quantization="int4", kv_cache_dtype="fp8"), 0.1025),
    ],
)
def test_measured_error_matches_the_documented_rate(
    model: QualityModel, config: QualityConfig, documented: float
) -> None:
    p = error_probability(config)
    assert p == pytest.approx(documented, abs=0.001)  # the docstring's table
    draws = 6000
    bound = 4 * math.sqrt(p * (1 - p) / draws)  # binomial, four standard deviations
    assert abs(_measured_error(model, config, draws, seed=2026) - p) < bound


def test_int4_on_8b_drops_quality_past_the_canary_threshold_but_not_on_70b() -> None:
    def relative_drop(name: str) -> float:
        healthy = 1 - error_probability(QualityConfig(name))
        return (healthy - (1 - error_probability(QualityConfig(name, "int4")))) / healthy

    assert relative_drop(LLAMA_8B) > 0.10
    assert relative_drop(LLAMA_70B) < 0.10


def test_error_falls_with_size_and_rises_with_quantization() -> None:
    sizes = ["meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B", LLAMA_8B, LLAMA_70B]
    for quantization in ("none", "fp8", "int8", "int4"):
        errors = [error_probability(QualityConfig(m, quantization)) for m in sizes]
        assert errors == sorted(errors, reverse=True) and len(set(errors)) == len(errors)
    for name in sizes:
        levels = [
            error_probability(QualityConfig(name, q)) for q in ("none", "fp8", "int8", "int4")
        ]
        assert levels == sorted(levels) and len(set(levels)) == 4
        assert error_probability(QualityConfig(name, "none", "fp8")) > levels[0]


def test_config_is_read_from_a_deployment_spec(model: QualityModel) -> None:
    deployment = DeploymentSpec(
        name="chat", model=LLAMA_8B, gpu="L4",
        engine_args=EngineArgs(quantization="int4", kv_cache_dtype="fp8"),
    )  # fmt: skip
    config = QualityConfig.of(deployment)
    assert config == QualityConfig(LLAMA_8B, "int4", "fp8")
    a = model.answer("What is the capital of Peru?", deployment, random.Random(1))
    b = model.answer("What is the capital of Peru?", config, random.Random(1))
    assert a == b and a is not None


def test_unknown_settings_and_models_are_clear_errors() -> None:
    with pytest.raises(QualityError, match="unknown quantization 'int2'; known: none, fp8"):
        error_probability(QualityConfig(LLAMA_8B, "int2"))  # type: ignore[arg-type]
    with pytest.raises(QualityError, match="unknown kv_cache_dtype 'int8'"):
        error_probability(QualityConfig(LLAMA_8B, "none", "int8"))  # type: ignore[arg-type]
    with pytest.raises(CatalogError, match="unknown model 'no-such-model'"):
        error_probability(QualityConfig("no-such-model"))
