"""The explain step with the real Groq explainer against the local stand-in server.

An LLM may reword a proposal's narrative, never touch its figures: a reply whose numbers
all come from the proposal replaces the narrative, anything else leaves the template,
and a slow or failing provider never loses a proposal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agents.common.agent import AgentDeps
from agents.common.explain import explain_proposal
from agents.common.proposals import Delta, Proposal
from agents.context import FleetContext
from agents.registry import agent_names, get_agent
from optiinfra.config.schema import LLMConfig
from optiinfra.llm import CallPolicy, Explainer, GroqExplainer, build_explainer
from tests.agents.fleets import context, default_like
from tests.llm.standin import FAKE_KEY, KEY_ENV, ChatStandIn, Step, reply

FAST = CallPolicy(backoff_seconds=0.01, max_backoff_seconds=0.02)
#: A reply with no number at all: the guard passes it for any proposal.
PLAIN_REPLY = {
    "summary": "This change follows from the measured load of the deployment.",
    "rationale": "The detector compared what the deployment serves with what it costs.",
    "risks": ["The load may change after the window that was measured."],
}
#: What a proposal's figures are, apart from the wording an LLM may change.
FIGURE_FIELDS = {"change", "expected_deltas", "evidence"}


@pytest.fixture(scope="module")
def fleet() -> FleetContext:
    return context(default_like())


@pytest.fixture(scope="module")
def plain(fleet: FleetContext) -> dict[str, list[Proposal]]:
    """Every agent's proposals with no explainer (the template narratives)."""
    return {name: get_agent(name).propose(fleet) for name in agent_names()}


def _proposal(plain: dict[str, list[Proposal]], target: str, kind: str) -> Proposal:
    return next(p for ps in plain.values() for p in ps if (p.target, p.kind) == (target, kind))


@pytest.fixture
def server() -> Iterator[ChatStandIn]:
    with ChatStandIn(default=reply(PLAIN_REPLY)) as standin:
        yield standin


Make = Callable[..., Explainer]


@pytest.fixture
def groq(server: ChatStandIn) -> Iterator[Make]:
    """Builds real Groq explainers (the groq SDK) aimed at ``server``; closes them."""
    built: list[Explainer] = []

    def make(*, timeout: float = 5.0, policy: CallPolicy = FAST) -> Explainer:
        config = LLMConfig(
            provider="groq",
            model="llama-test",
            base_url=server.root,
            api_key_env=KEY_ENV,
            timeout=timeout,
        )
        explainer = build_explainer(
            config, environ={KEY_ENV: FAKE_KEY}, policy=policy, sleep=lambda _: None
        )
        assert isinstance(explainer, GroqExplainer)
        built.append(explainer)
        return explainer

    yield make
    for explainer in built:
        explainer.close()


def _figures_json(proposal: Proposal) -> str:
    return proposal.model_dump_json(include=FIGURE_FIELDS)


def _without_wording(proposals: list[Proposal]) -> list[dict[str, Any]]:
    return [p.model_dump(exclude={"narrative", "explanation_source"}) for p in proposals]


def _sent(server: ChatStandIn) -> dict[str, Any]:
    """The request JSON of the last user message the stand-in received."""
    body = server.requests[-1].body
    user = next(m for m in body["messages"] if m["role"] == "user")
    return json.loads(user["content"].split("\n", 1)[1])


# ---------------------------------------------------------------- one proposal


def test_a_reply_built_from_the_figures_replaces_the_narrative_only(
    plain: dict[str, list[Proposal]], server: ChatStandIn, groq: Make
) -> None:
    idle = _proposal(plain, "legacy-7b", "idle_shutdown")
    assert idle.expected_deltas["cost_usd_per_month"].value == pytest.approx(-734.38)
    worded = {
        "summary": "Scaling idle legacy-7b to zero saves $734.38 a month.",
        "rationale": "It served no requests in the window, yet costs $1.006 an hour on 1 GPU.",
        "risks": ["A request that arrives after the shutdown waits for a cold start."],
    }
    server.queue(reply(worded))

    explained = explain_proposal(groq(), idle)

    assert explained.explanation_source == "llm"
    assert explained.narrative.startswith(worded["summary"] + " " + worded["rationale"])
    assert explained.narrative.endswith(" Risk: " + worded["risks"][0])
    assert explained.narrative != idle.narrative
    assert _figures_json(explained) == _figures_json(idle)
    assert explained.model_dump(exclude={"narrative", "explanation_source"}) == idle.model_dump(
        exclude={"narrative", "explanation_source"}
    )
    assert server.count == 1


def test_a_reply_inventing_a_number_leaves_the_template(
    plain: dict[str, list[Proposal]], server: ChatStandIn, groq: Make
) -> None:
    idle = _proposal(plain, "legacy-7b", "idle_shutdown")
    invented = {
        "summary": "Scaling idle legacy-7b to zero saves $9,140 a month.",
        "rationale": "It served no requests in the window.",
        "risks": [],
    }
    server.queue(reply(invented))
    explainer = groq()

    explained = explain_proposal(explainer, idle)

    assert explained == idle
    assert explained.explanation_source == "template"
    assert "9,140" not in explained.narrative
    assert explainer.totals.fallbacks == 1


def test_the_request_carries_the_figures_and_nothing_secret(
    plain: dict[str, list[Proposal]], server: ChatStandIn, groq: Make
) -> None:
    resize = _proposal(plain, "code-3b", "right_size")
    secret = "tok-DO-NOT-SEND-7731"
    proposal = resize.model_copy(
        update={"evidence": {**resize.evidence, "api_token": secret, "limit": math.inf}}
    )
    assert any(d.low != d.high for d in proposal.expected_deltas.values())

    explain_proposal(groq(), proposal)

    sent = _sent(server)
    assert (sent["kind"], sent["target"]) == ("right_size", "code-3b")
    assert sent["evidence"] == [proposal.title]
    assert sent["draft"]["summary"] == proposal.narrative
    figures = {name: (f["value"], f["unit"]) for name, f in sent["figures"].items()}
    expected: dict[str, tuple[float, str]] = {"confidence": (proposal.confidence, "ratio")}
    for name, delta in proposal.expected_deltas.items():
        expected[name] = (delta.value, delta.unit)
        low, high = delta.bounds()
        if (low, high) != (delta.value, delta.value):
            expected[f"{name}_low"] = (low, delta.unit)
            expected[f"{name}_high"] = (high, delta.unit)
    for name, value in proposal.evidence.items():
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric and math.isfinite(value):
            expected[name] = (float(value), "")
    assert figures == expected
    assert "limit" not in figures  # an unbounded figure is not a figure to quote

    (request,) = server.requests
    assert request.headers["Authorization"] == f"Bearer {FAKE_KEY}"  # the key's one place
    body = json.dumps(request.body)
    assert FAKE_KEY not in body
    assert secret not in body
    assert "api_token" not in body


def test_a_proposal_with_an_unknown_central_figure_keeps_its_template(
    plain: dict[str, list[Proposal]], server: ChatStandIn, groq: Make
) -> None:
    idle = _proposal(plain, "legacy-7b", "idle_shutdown")
    unknown = idle.model_copy(
        update={
            "expected_deltas": {
                **idle.expected_deltas,
                "gpu_hours_per_month": Delta(value=math.nan, unit="GPU h"),
            }
        }
    )

    explained = explain_proposal(groq(), unknown)

    assert _figures_json(explained) == _figures_json(unknown)
    assert "gpu_hours_per_month" not in _sent(server)["figures"]


# ---------------------------------------------------------------- the whole graph


def test_through_the_graph_the_explainer_changes_no_figure(
    fleet: FleetContext, plain: dict[str, list[Proposal]], server: ChatStandIn, groq: Make
) -> None:
    explainer = groq()
    total = 0
    for name in agent_names():
        proposals, _ = get_agent(name).run(fleet, AgentDeps(explainer=explainer))

        assert _without_wording(proposals) == _without_wording(plain[name])
        assert [_figures_json(p) for p in proposals] == [_figures_json(p) for p in plain[name]]
        assert all(p.explanation_source == "llm" for p in proposals)
        assert all(p.narrative.startswith(PLAIN_REPLY["summary"]) for p in proposals)
        total += len(proposals)
    assert total >= 5
    assert server.count == total  # one request per proposal, none for empty agents


def test_a_provider_that_times_out_loses_no_proposal(
    fleet: FleetContext, plain: dict[str, list[Proposal]], server: ChatStandIn, groq: Make
) -> None:
    server.default = Step(content=json.dumps(PLAIN_REPLY), delay=3.0)
    explainer = groq(timeout=0.1, policy=CallPolicy(max_attempts=2, backoff_seconds=0.01))

    for name in agent_names():
        proposals, _ = get_agent(name).run(fleet, AgentDeps(explainer=explainer))

        assert proposals == plain[name]  # figures, order and the template narratives
        assert all(p.explanation_source == "template" for p in proposals)
    totals = explainer.totals
    assert totals.explanations == sum(len(ps) for ps in plain.values())
    assert totals.from_llm == 0
    assert totals.fallbacks == totals.explanations
    # Three calls in a row got no answer: the breaker skipped the rest (2 attempts each).
    assert server.count == 3 * 2
