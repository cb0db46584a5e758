"""The LLM layer: a model words the explanation of a recommendation, and nothing else.

Agents compute every figure in code and write a template explanation; an
:class:`Explainer` may replace that text with the model's, but only when the reply is
valid JSON of the expected shape and every number in it is one of the request's
figures (:mod:`optiinfra.llm.guard`). Anything else, and any provider failure, gives
the template back with ``fallback_reason`` set: explaining never raises and never
blocks a recommendation. See docs/llm.md.

Example::

    from optiinfra.llm import ExplanationRequest, Figure, TemplateText, build_explainer

    explainer = build_explainer(config.llm, cache_dir=default_cache_dir())
    explanation = explainer.explain(
        ExplanationRequest(
            kind="idle_shutdown",
            target="instance i-0abc (g5.xlarge)",
            figures={"savings": Figure(value=734.4, unit="USD/month", display="$734.40/month")},
            template=TemplateText(summary="Stop i-0abc: idle for 14 days, $734.40/month."),
        )
    )
    explanation.source, explanation.fallback_reason, explainer.totals.total_tokens
"""

from optiinfra.llm.build import build_explainer
from optiinfra.llm.cache import CachedReply, ResponseCache, cache_key, default_cache_dir
from optiinfra.llm.clients import (
    DEFAULT_GROQ_MODEL,
    GROQ_API_ROOT,
    GroqExplainer,
    OpenAICompatibleExplainer,
)
from optiinfra.llm.explainers import (
    CallPolicy,
    ChatExplainer,
    Explainer,
    ProviderFailure,
    TemplateExplainer,
)
from optiinfra.llm.guard import GuardRules, find_numbers, unsupported_numbers
from optiinfra.llm.models import (
    Explanation,
    ExplanationRequest,
    Figure,
    ModelReply,
    TemplateText,
    TokenTotals,
    TokenUsage,
)
from optiinfra.llm.prompt import PROMPT_VERSION, build_messages, parse_reply

__all__ = [
    "DEFAULT_GROQ_MODEL",
    "GROQ_API_ROOT",
    "PROMPT_VERSION",
    "CachedReply",
    "CallPolicy",
    "ChatExplainer",
    "Explainer",
    "Explanation",
    "ExplanationRequest",
    "Figure",
    "GroqExplainer",
    "GuardRules",
    "ModelReply",
    "OpenAICompatibleExplainer",
    "ProviderFailure",
    "ResponseCache",
    "TemplateExplainer",
    "TemplateText",
    "TokenTotals",
    "TokenUsage",
    "build_explainer",
    "build_messages",
    "cache_key",
    "default_cache_dir",
    "find_numbers",
    "parse_reply",
    "unsupported_numbers",
]
