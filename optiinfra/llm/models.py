"""The records that cross the LLM layer: what an agent asks for, and what it gets back.

An agent has already computed every figure and written a template explanation before
it asks; the LLM may only reword that explanation. So the request carries the figures
(value, unit, and how code renders them), the evidence and the template text, and the
answer is always a complete :class:`Explanation`, either the model's (``source="llm"``)
or the template (``source="template"``, with ``fallback_reason`` saying why when an LLM
was configured).

Example::

    request = ExplanationRequest(
        kind="spot_migration",
        target="deployment chat-70b on g6.xlarge",
        figures={"savings": Figure(value=1234.5, unit="USD/month", display="$1,234.50/month")},
        evidence=["interruption rate of g6.xlarge spot in us-east-1 over 30 days: low"],
        template=TemplateText(summary="Move chat-70b to spot to save $1,234.50/month."),
    )
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Explanation",
    "ExplanationRequest",
    "Figure",
    "ModelReply",
    "TemplateText",
    "TokenTotals",
    "TokenUsage",
]

#: Units whose values are fractions of one, so ``0.235`` may be written ``23.5%``.
RATIO_UNITS = frozenset({"ratio", "fraction", "share"})
#: Units whose values are already percentages, so ``12.5`` may be written ``12.5%``.
PERCENT_UNITS = frozenset({"%", "percent", "pct"})


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Figure(_Frozen):
    """One number computed by code, with its unit and the way code shows it."""

    value: float = Field(description="The value, computed by code (finite).")
    unit: str = Field(default="", description="Unit, e.g. USD/month, seconds, ratio, %.")
    display: str | None = Field(
        default=None,
        description="How code renders the figure for people (e.g. '$1,234.50/month'); "
        "default: the value with thousands separators, then the unit.",
    )

    def rendered(self) -> str:
        """The text the model is told to copy (``display``, or a plain rendering)."""
        if self.display:
            return self.display
        value = f"{self.value:,.6g}" if abs(self.value) < 1e15 else f"{self.value:g}"
        return f"{value} {self.unit}".strip()


class TemplateText(_Frozen):
    """The explanation code wrote itself; shown whenever the LLM's is not used."""

    summary: str = Field(min_length=1, description="One sentence a reviewer reads first.")
    rationale: str = Field(default="", description="Why, in a few sentences.")
    risks: list[str] = Field(default_factory=list, description="What could go wrong.")


class ExplanationRequest(_Frozen):
    """What an agent hands the LLM layer for one recommendation."""

    kind: str = Field(min_length=1, description="Recommendation kind, e.g. spot_migration.")
    target: str = Field(min_length=1, description="What the change applies to.")
    figures: dict[str, Figure] = Field(
        default_factory=dict, description="Every number the explanation may mention, by name."
    )
    evidence: list[str] = Field(
        default_factory=list, description="Statements code derived from the data."
    )
    template: TemplateText = Field(description="The explanation code already wrote.")


class TokenUsage(_Frozen):
    """Tokens one call (all its attempts together) spent at the provider."""

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class TokenTotals(_Frozen):
    """Running totals of one explainer, for the optimize flow to report."""

    explanations: int = Field(default=0, ge=0, description="explain() calls answered.")
    from_llm: int = Field(default=0, ge=0, description="Answers written by the model.")
    from_template: int = Field(default=0, ge=0, description="Answers that are the template.")
    fallbacks: int = Field(default=0, ge=0, description="Template answers with a reason.")
    cache_hits: int = Field(default=0, ge=0, description="Answers served from the cache.")
    requests: int = Field(default=0, ge=0, description="HTTP requests sent (retries included).")
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)


class Explanation(_Frozen):
    """The explanation shown with a recommendation. Its numbers are the request's figures."""

    summary: str = Field(min_length=1)
    rationale: str = ""
    risks: list[str] = Field(default_factory=list)
    source: Literal["llm", "template"]
    provider: str = Field(description="none, groq or openai-compatible.")
    model: str | None = Field(default=None, description="Model that wrote it (source llm).")
    usage: TokenUsage | None = Field(
        default=None, description="Tokens this call spent; None when no request was made."
    )
    cached: bool = Field(default=False, description="Served from the response cache.")
    fallback_reason: str | None = Field(
        default=None, description="Why the template is shown although an LLM is configured."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Explanation:
        if self.source == "llm" and self.fallback_reason is not None:
            raise ValueError("an llm explanation has no fallback_reason")
        if self.source == "llm" and not self.model:
            raise ValueError("an llm explanation names its model")
        return self


class ModelReply(BaseModel):
    """The JSON object the model must answer with; anything else is rejected.

    Unknown keys are ignored (models like to add a ``"notes"`` key); missing or
    mistyped ones, empty text and oversize text are not.
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    summary: str = Field(min_length=1, max_length=600, description="One sentence.")
    rationale: str = Field(min_length=1, max_length=4000, description="A short paragraph.")
    risks: list[str] = Field(default_factory=list, max_length=10, description="Short items.")

    @field_validator("risks")
    @classmethod
    def _risk_items(cls, risks: list[str]) -> list[str]:
        cleaned = [risk.strip() for risk in risks]
        if any(not risk or len(risk) > 600 for risk in cleaned):
            raise ValueError("each risk is a non-empty string of at most 600 characters")
        return cleaned
