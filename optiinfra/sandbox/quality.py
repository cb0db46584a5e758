"""How well a sandbox server answers: a bundled question set and a degradation model.

A real fleet's answer quality depends on the model and on how it is served; OptiInfra's
quality probes measure it by asking questions with known answers. The sandbox imitates
that: when a prompt contains one of the bundled questions (``data/qa.json``), the server
answers with the reference answer, or, with probability ``p`` below, a plausible wrong
one; any other prompt gets filler text (``answer`` returns None).

Degradation model (the probability that one answer is wrong)::

    p = min(0.95, base(params_b) + scale(params_b) * s * (q_penalty + kv_penalty))
    scale(params_b) = clamp(sqrt(8 / params_b), 0.5, 2.0)

``params_b`` is the model's total parameter count in billions
(``optiinfra.catalog.model_spec(model).params_b``). ``base`` interpolates linearly in
log(params_b) between these anchors and is flat outside them:

    ==========  ====  ====  ====  ====  ====
    params_b     1     3     8     13    70
    base        0.30  0.18  0.10  0.08  0.04
    ==========  ====  ====  ====  ====  ====

``s`` is the deployment's ``quantization_sensitivity``: 1 (the default) keeps the
published figures below; a fleet raises it to plant "this model breaks under
quantization" for a test (``fleets/fragile.yaml``). It is a planted fault, not a
published figure.

Penalties, in probability points at 8B (``scale`` = 1, ``s`` = 1):

    =================  ======  ======  ======  ======
    quantization       none    fp8     int8    int4
    q_penalty          0       0.005   0.015   0.12
    =================  ======  ======  ======  ======
    kv_cache_dtype     auto    fp8
    kv_penalty         0       0.005
    =================  ======  ======

Resulting error probability for some bundled models (KV cache ``auto``; an FP8 KV
cache adds 0.005 x scale):

    ============================  ======  =====  =====  =====  =====  =====
    model                         params  scale  none   fp8    int8   int4
    ============================  ======  =====  =====  =====  =====  =====
    meta-llama/Llama-3.2-1B        1.24   2.00   0.277  0.287  0.307  0.517
    meta-llama/Llama-3.2-3B        3.21   1.58   0.174  0.182  0.198  0.364
    mistralai/Mistral-7B-v0.1      7.24   1.05   0.108  0.113  0.124  0.234
    meta-llama/Meta-Llama-3-8B     8.03   1.00   0.100  0.105  0.115  0.220
    meta-llama/Llama-2-13b-hf     13.0    0.78   0.080  0.084  0.092  0.174
    mistralai/Mixtral-8x7B-v0.1   46.7    0.50   0.050  0.052  0.057  0.110
    meta-llama/Meta-Llama-3-70B   70.6    0.50   0.040  0.043  0.048  0.100
    ============================  ======  =====  =====  =====  =====  =====

Where the numbers come from:

- ``base`` by size is an assumption for this easy, short-answer set; only its order
  (bigger models answer factual questions better) follows published results.
- fp8 and int8: Kurtic et al., "'Give Me BF16 or Give Me Death'? Accuracy-Performance
  Trade-Offs in LLM Quantization" (arXiv:2411.02355, ACL 2025), on the Llama-3.1 family:
  FP8 weights and activations are "effectively lossless" at every scale; well-tuned INT8
  loses 1-3 % of accuracy (1.5 points of a 90 % score here).
- int4 is the *aggressive* setting, an assumption at the pessimistic end: the same
  study finds carefully tuned 4-bit weight-only models close to INT8, but naive 4-bit
  quantization of Llama-3-class models degrades clearly (Huang et al., "How Good Are
  Low-bit Quantized LLaMA3 Models?", arXiv:2404.14047). At 8B it moves accuracy from
  0.90 to 0.78, a 13 % relative drop, past the 10 % drop at which a canary rolls back;
  at 70B from 0.96 to 0.90 (6 %), under it.
- ``scale``: larger models lose less to quantization (Kurtic et al.; Ouyang et al.,
  "Low-Bit Quantization Favors Undertrained LLMs", arXiv:2411.17691). The square root
  and its clamp are assumptions.
- FP8 KV cache: vLLM's documentation says FP8 E4M3 "typically only minimally degrades
  inference accuracy"; 0.5 points is an assumption.

Example::

    >>> import random
    >>> model = QualityModel()
    >>> config = QualityConfig("meta-llama/Llama-3.1-8B-Instruct", quantization="int4")
    >>> round(error_probability(config), 3)
    0.22
    >>> model.answer("Q: What is the capital of France?", config, random.Random(0)).text
    'Paris'
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import pairwise
from typing import Protocol

from optiinfra.catalog import model_spec
from optiinfra.errors import OptiInfraError
from optiinfra.sandbox.spec import DeploymentSpec, KvCacheDtype, Quantization
from optiinfra.scoring import exact_match

BASE_ERROR_ANCHORS: tuple[tuple[float, float], ...] = (
    (1.0, 0.30),
    (3.0, 0.18),
    (8.0, 0.10),
    (13.0, 0.08),
    (70.0, 0.04),
)
QUANTIZATION_PENALTY: Mapping[str, float] = {"none": 0.0, "fp8": 0.005, "int8": 0.015, "int4": 0.12}
KV_CACHE_PENALTY: Mapping[str, float] = {"auto": 0.0, "fp8": 0.005}
REFERENCE_PARAMS_B = 8.0
SCALE_LIMITS = (0.5, 2.0)
MAX_ERROR = 0.95

_QA_FILE = "qa.json"
_ITEM_FIELDS = {"id", "category", "question", "answer", "aliases", "distractors"}


class QualityError(OptiInfraError):
    """The question set is malformed, or a configuration names an unknown setting."""


class _Random(Protocol):
    """What the model needs from a random source (``random.Random``, numpy's Generator)."""

    def random(self) -> float: ...


@dataclass(frozen=True)
class QAItem:
    """One bundled question with its reference answer."""

    id: str
    category: str
    question: str
    answer: str
    aliases: tuple[str, ...] = ()
    distractors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    """What a server says to a prompt; ``correct`` is None when nobody knows the answer."""

    text: str
    correct: bool | None
    item_id: str | None


@dataclass(frozen=True)
class QualityConfig:
    """The part of a deployment that decides how well it answers."""

    model: str
    quantization: Quantization = "none"
    kv_cache_dtype: KvCacheDtype = "auto"
    #: Multiplies the quantization and KV-cache penalties (a planted fault when > 1).
    sensitivity: float = 1.0

    @classmethod
    def of(cls, deployment: DeploymentSpec | QualityConfig) -> QualityConfig:
        if isinstance(deployment, QualityConfig):
            return deployment
        args = deployment.engine_args
        return cls(
            deployment.model,
            args.quantization,
            args.kv_cache_dtype,
            deployment.quantization_sensitivity,
        )


def base_error(params_b: float) -> float:
    """Error of an unquantized model of this size (log-linear between the anchors)."""
    points = BASE_ERROR_ANCHORS
    if params_b <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in pairwise(points):
        if params_b <= x1:
            t = (math.log(params_b) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return y0 + t * (y1 - y0)
    return points[-1][1]


def size_scale(params_b: float) -> float:
    """How much more (or less) a model of this size suffers from quantization than 8B."""
    low, high = SCALE_LIMITS
    return min(high, max(low, math.sqrt(REFERENCE_PARAMS_B / params_b)))


@cache
def error_probability(config: QualityConfig) -> float:
    """The probability that a server with this configuration answers a question wrongly."""
    if config.quantization not in QUANTIZATION_PENALTY:
        raise QualityError(
            f"unknown quantization {config.quantization!r}; "
            f"known: {', '.join(QUANTIZATION_PENALTY)}"
        )
    if config.kv_cache_dtype not in KV_CACHE_PENALTY:
        raise QualityError(
            f"unknown kv_cache_dtype {config.kv_cache_dtype!r}; "
            f"known: {', '.join(KV_CACHE_PENALTY)}"
        )
    params_b = model_spec(config.model).params_b
    if not (math.isfinite(config.sensitivity) and config.sensitivity >= 0):
        raise QualityError(
            f"quantization_sensitivity must be a finite number ≥ 0; got {config.sensitivity!r}"
        )
    penalty = QUANTIZATION_PENALTY[config.quantization] + KV_CACHE_PENALTY[config.kv_cache_dtype]
    penalty *= config.sensitivity
    return min(MAX_ERROR, base_error(params_b) + size_scale(params_b) * penalty)


def question_key(text: str) -> str:
    """Text reduced for matching a question inside a prompt: lower case, words and
    numbers only (a decimal point between digits and ``+ - * / %`` are kept)."""
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text.lower())
    kept = "".join(ch if ch.isalnum() or ch in "+-*/%." else " " for ch in text)
    return " ".join(kept.split())


def parse_qa(text: str, source: str) -> tuple[QAItem, ...]:
    """Items of a question-set JSON document, validated; errors name source and item."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise QualityError(f"{source}: not valid JSON: {exc}") from exc
    raw_items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(raw_items, list) or not raw_items:
        raise QualityError(f"{source}: expected an object with a non-empty 'items' list")
    items: list[QAItem] = []
    ids: set[str] = set()
    questions: dict[str, str] = {}
    for index, raw in enumerate(raw_items):
        where = f"{source}: items[{index}]"
        if not isinstance(raw, dict):
            raise QualityError(f"{where}: expected an object")
        where = f"{where} ({raw.get('id', '?')})"
        unknown = set(raw) - _ITEM_FIELDS
        if unknown:
            raise QualityError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        fields = {
            name: _text(raw, name, where) for name in ("id", "category", "question", "answer")
        }
        aliases = _texts(raw, "aliases", where)
        distractors = _texts(raw, "distractors", where)
        item = QAItem(**fields, aliases=aliases, distractors=distractors)
        if item.id in ids:
            raise QualityError(f"{where}: id: duplicate id {item.id!r}")
        key = question_key(item.question)
        if key in questions:
            raise QualityError(f"{where}: question: same question as {questions[key]}")
        for wrong in distractors:
            if exact_match(wrong, item.answer, item.aliases):
                raise QualityError(f"{where}: distractors: {wrong!r} is a right answer")
        ids.add(item.id)
        questions[key] = item.id
        items.append(item)
    return tuple(items)


def _text(raw: dict[str, object], name: str, where: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value.strip():
        raise QualityError(f"{where}: {name}: required, a non-empty string")
    return value.strip()


def _texts(raw: dict[str, object], name: str, where: str) -> tuple[str, ...]:
    value = raw.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise QualityError(f"{where}: {name}: expected a list of non-empty strings")
    return tuple(v.strip() for v in value)


@cache
def bundled_items() -> tuple[QAItem, ...]:
    """The question set shipped with the sandbox (``optiinfra/sandbox/data/qa.json``)."""
    ref = resources.files("optiinfra.sandbox").joinpath("data").joinpath(_QA_FILE)
    try:
        text = ref.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise QualityError(f"the sandbox question set {_QA_FILE} is missing") from exc
    return parse_qa(text, f"optiinfra/sandbox/data/{_QA_FILE}")


class QualityModel:
    """Answers bundled questions as well as a configuration allows.

    Every server of a fleet may share one instance: it holds only the question set and
    indexes built from it; randomness comes from the caller's ``rng``.
    """

    def __init__(self, items: Sequence[QAItem] | None = None) -> None:
        self.items: tuple[QAItem, ...] = tuple(items) if items is not None else bundled_items()
        self._by_key = {question_key(item.question): item for item in self.items}
        # Longest question first, so a question that contains another wins.
        self._scan = sorted(self._by_key.items(), key=lambda kv: -len(kv[0]))
        self._wrong = {item.id: self._wrong_answers(item) for item in self.items}
        lacking = [item_id for item_id, wrong in self._wrong.items() if not wrong]
        if lacking:
            raise QualityError(f"no plausible wrong answer for item(s) {', '.join(lacking)}")

    def lookup(self, prompt: str) -> QAItem | None:
        """The bundled question contained in a prompt (or a chat message), if any."""
        key = question_key(prompt)
        if key in self._by_key:
            return self._by_key[key]
        padded = f" {key} "
        for question, item in self._scan:
            if f" {question} " in padded:
                return item
        return None

    def answer(
        self, prompt: str, config: QualityConfig | DeploymentSpec, rng: _Random
    ) -> Answer | None:
        """The server's answer to a bundled question, or None for any other prompt.

        Draws once from ``rng`` to decide right or wrong and once more to pick the wrong
        answer, so the same rng state always gives the same answer.
        """
        item = self.lookup(prompt)
        if item is None:
            return None
        if rng.random() < error_probability(QualityConfig.of(config)):
            return Answer(self.wrong_answer(item, rng), correct=False, item_id=item.id)
        return Answer(item.answer, correct=True, item_id=item.id)

    def wrong_answer(self, item: QAItem, rng: _Random) -> str:
        """A plausible answer to ``item`` that scores 0 on exact match."""
        choices = self._wrong[item.id]
        return choices[min(len(choices) - 1, int(rng.random() * len(choices)))]

    def _wrong_answers(self, item: QAItem) -> tuple[str, ...]:
        """The item's distractors; else, for a number, nearby numbers; else the answers
        of other questions of its category (another capital, another symbol)."""
        if item.distractors:
            candidates: list[str] = list(item.distractors)
        elif item.answer.isdigit():
            candidates = [str(n) for n in _nearby_numbers(int(item.answer))]
        else:
            candidates = [
                other.answer
                for other in self.items
                if other.category == item.category and other.id != item.id
            ]
        seen: set[str] = set()
        wrong = []
        for text in candidates:
            if text not in seen and not exact_match(text, item.answer, item.aliases):
                seen.add(text)
                wrong.append(text)
        return tuple(wrong)


def _nearby_numbers(n: int) -> list[int]:
    """Numbers a confused model might say instead of ``n``: off by one, two, a tenth."""
    steps = sorted({1, 2, 10, max(1, round(n * 0.1))})
    near = [n + sign * step for step in steps for sign in (1, -1)]
    if n <= 20:
        near.append(2 * n)
    return [m for m in near if m >= 0 and m != n]
