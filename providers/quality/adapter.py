"""The ``quality`` provider: answer quality as quality events, per deployment and config.

Each run does two things, concurrently, and turns both into ``QualityEvent`` rows:

- **probes**: the run's slice of the golden set (``probes_per_run`` items; successive
  runs take the next ones) is sent to every target; each answer is scored by exact match
  and token F1 against the reference and its aliases (``optiinfra.scoring``);
- **sampled interactions**: real prompts and answers whose time falls in the collection
  window, sampled, scored by EM/F1 when they carry a reference.

When a judge is configured it also grades answers (interactions first, since they rarely
have a reference, then probes), at most ``judge.max_per_run`` a run.

A target that is down, a failing judge or an unreadable interactions source is a note,
and the rest is still collected; only a run that produced nothing while something failed
raises, so the collection task reports the provider as failed and retries it.

Example ``providers.yaml`` entry::

    - name: answer-quality
      kind: quality
      quality:
        golden_set: golden.jsonl
        targets:
          - {deployment: chat, base_url: "http://vllm-1:8000/v1"}
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import httpx
import pandas as pd
from pydantic import SecretStr

from optiinfra.config import ProviderConfig
from optiinfra.errors import ConfigError, ConfigIssue, OptiInfraError
from optiinfra.models import QualityEvent, QualityKind
from optiinfra.scoring import exact_match, token_f1
from optiinfra.secrets import provider_secret
from providers.base import CollectionContext, Feature, Provider
from providers.quality.golden import load_golden_set, select_items, window_index
from providers.quality.interactions import (
    in_window,
    parse_interactions,
    read_source,
    sample,
)
from providers.quality.judge import Judge, make_judge
from providers.quality.probes import Endpoint, probe_targets
from providers.registry import register


class QualityCollectionError(OptiInfraError):
    """Nothing was scored in a run and something failed (each cause is listed)."""


@dataclass
class _Scored:
    """An answer on its way to becoming a QualityEvent."""

    ts: datetime
    deployment: str
    config_id: str
    kind: QualityKind
    item_id: str
    question: str
    answer: str
    reference: str | None
    aliases: tuple[str, ...]
    latency_seconds: float | None
    judge_score: float | None = None

    def event(self, provider: ProviderConfig) -> QualityEvent:
        em = f1 = None
        if self.reference is not None:
            em = exact_match(self.answer, self.reference, self.aliases)
            f1 = token_f1(self.answer, self.reference, self.aliases)
        return QualityEvent(
            ts=self.ts,
            tenant=provider.tenant,
            provider=provider.name,
            deployment=self.deployment,
            config_id=self.config_id,
            kind=self.kind,
            item_id=self.item_id,
            exact_match=em,
            f1=f1,
            judge_score=self.judge_score,
            latency_seconds=self.latency_seconds,
        )


@register
class QualityProvider(Provider):
    """Golden-set probes and sampled real interactions, scored into quality events."""

    kind: ClassVar[str] = "quality"
    description: ClassVar[str] = (
        "Answer quality: golden-set probes to OpenAI-compatible endpoints and sampled real "
        "interactions, scored by exact match, token F1 and an optional LLM judge."
    )
    features: ClassVar[frozenset[Feature]] = frozenset({Feature.QUALITY})
    unsupported: ClassVar[dict[Feature, str]] = {
        Feature.METRICS: "it asks questions; performance metrics come from a metrics provider "
        "(prometheus, direct scrape)",
        Feature.COST: "it measures answers, not spend",
        Feature.INVENTORY: "it knows endpoints, not the instances behind them",
        Feature.ACTUATE: "it only observes answers; changes go through a fleet's own provider",
    }

    def __init__(
        self,
        config: ProviderConfig,
        *,
        client: httpx.AsyncClient | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(config)
        if config.quality is None:
            raise ConfigError(
                [
                    ConfigIssue(
                        file="providers.yaml",
                        line=None,
                        field=f"providers.{config.name}.quality",
                        message="a provider of kind quality needs a quality: section",
                    )
                ]
            )
        self.settings = config.quality
        self._client = client
        self._owns_client = client is None
        self._environ = environ

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=self.settings.concurrency + 4)
            self._client = httpx.AsyncClient(
                timeout=self.settings.request_timeout, limits=limits, follow_redirects=True
            )
        return self._client

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _secret(self, credential: str | None, purpose: str) -> SecretStr | None:
        if credential is None:
            return None
        try:
            return provider_secret(self.config, credential, environ=self._environ)
        except OptiInfraError as exc:
            raise OptiInfraError(f"{purpose}: {exc.message}") from None

    async def collect_quality(self, ctx: CollectionContext) -> pd.DataFrame:
        """Probe, read interactions, judge, and return one frame of quality events."""
        client = self._http()
        limit = asyncio.Semaphore(self.settings.concurrency)
        failures: list[str] = []
        parts = await asyncio.gather(
            self._probes(ctx, client, limit, failures),
            self._interactions(ctx, client, failures),
            return_exceptions=True,
        )
        scored: list[_Scored] = []
        for name, part in zip(("probes", "interactions"), parts, strict=True):
            if isinstance(part, BaseException):
                if not isinstance(part, Exception):
                    raise part
                message = part.message if isinstance(part, OptiInfraError) else repr(part)
                failures.append(f"{name}: {message}")
                self._note(f"{name} failed: {message}")
            else:
                scored.extend(part)
        if not scored and failures:
            raise QualityCollectionError(
                f"provider {self.name} scored nothing: " + "; ".join(failures)
            )
        await self._judge(scored, client, limit)
        events = [s.event(self.config) for s in scored]
        unscored = [e for e in events if e.exact_match is None and e.judge_score is None]
        if unscored:
            self._note(
                f"{len(unscored)} sampled interactions were not scored (no reference, and no "
                "judge score) and are not recorded"
            )
            events = [e for e in events if e.exact_match is not None or e.judge_score is not None]
        events.sort(key=lambda e: (e.deployment, e.kind.value, e.item_id, e.ts))
        return QualityEvent.to_frame(events)

    async def _probes(
        self,
        ctx: CollectionContext,
        client: httpx.AsyncClient,
        limit: asyncio.Semaphore,
        failures: list[str],
    ) -> list[_Scored]:
        s = self.settings
        if s.golden_set is None or s.probes_per_run == 0:
            return []
        golden = await asyncio.to_thread(load_golden_set, s.golden_set)
        window = window_index(ctx.start.timestamp(), ctx.end.timestamp())
        items = select_items(golden.items, s.probes_per_run, window, salt=self.name)
        endpoints: list[Endpoint] = []
        for target in s.targets:
            try:
                key = self._secret(target.credential, f"quality target {target.deployment}")
            except OptiInfraError as exc:
                self._note(exc.message)
                failures.append(exc.message)
                continue
            endpoints.append(
                Endpoint(
                    deployment=target.deployment,
                    base_url=str(target.base_url),
                    model=target.model,
                    api=target.api,
                    config_id=target.config_id,
                    api_key=key,
                )
            )
        run = await probe_targets(
            client,
            endpoints,
            items,
            limit=limit,
            max_tokens=s.max_tokens,
            system_prompt=s.system_prompt,
            timeout=s.request_timeout,
        )
        for note in run.notes:
            self._note(note)
        if not run.answers:
            failures.append("no target answered a probe")
        return [
            _Scored(
                ts=a.ts,
                deployment=a.deployment,
                config_id=a.config_id,
                kind=QualityKind.PROBE,
                item_id=a.item.id,
                question=a.item.text(),
                answer=a.text,
                reference=a.item.reference,
                aliases=a.item.aliases,
                latency_seconds=a.latency_seconds,
            )
            for a in run.answers
        ]

    async def _interactions(
        self, ctx: CollectionContext, client: httpx.AsyncClient, failures: list[str]
    ) -> list[_Scored]:
        source = self.settings.interactions
        if source is None:
            return []
        secret = self._secret(source.credential, "quality interactions")
        text, name = await read_source(source, client, ctx.start, ctx.end, secret)
        parsed = await asyncio.to_thread(
            parse_interactions,
            text,
            name,
            format=source.format,
            default_deployment=source.deployment,
        )
        if parsed.problems:
            shown = "; ".join(parsed.problems[:3])
            more = f" (and {len(parsed.problems) - 3} more)" if len(parsed.problems) > 3 else ""
            self._note(f"interactions: skipped {len(parsed.problems)} records: {shown}{more}")
        if parsed.without_content:
            self._note(
                f"interactions: {parsed.without_content} GenAI spans carry no prompt or answer "
                "text (content capture is off in their instrumentation)"
            )
        window = in_window(parsed.records, ctx.start, ctx.end)
        chosen = sample(window, source.sample_rate, source.max_per_run)
        return [
            _Scored(
                ts=r.ts,
                deployment=r.deployment,
                config_id=r.config_id,
                kind=QualityKind.SAMPLED,
                item_id=r.id,
                question=r.prompt,
                answer=r.answer,
                reference=r.reference,
                aliases=r.aliases,
                latency_seconds=r.latency_seconds,
            )
            for r in chosen
        ]

    def _make_judge(self, client: httpx.AsyncClient) -> Judge | None:
        settings = self.settings.judge
        if settings.provider == "none":
            return None
        try:
            key = self._secret(settings.credential, "quality judge")
        except OptiInfraError as exc:
            self._note(f"{exc.message}; answers were not judged")
            return None
        return make_judge(settings, client, key)

    async def _judge(
        self, scored: Sequence[_Scored], client: httpx.AsyncClient, limit: asyncio.Semaphore
    ) -> None:
        judge = self._make_judge(client)
        if judge is None or not scored:
            return
        order = sorted(scored, key=lambda s: s.kind != QualityKind.SAMPLED)
        chosen = order[: self.settings.judge.max_per_run]

        async def grade(item: _Scored) -> str | None:
            async with limit:
                verdict = await judge.grade(
                    item.question, item.answer, item.reference, item.aliases
                )
            item.judge_score = verdict.score
            return verdict.note

        notes = [n for n in await asyncio.gather(*(grade(s) for s in chosen)) if n]
        if notes:
            self._note(f"judge gave no score for {len(notes)} of {len(chosen)} answers: {notes[0]}")
        if len(scored) > len(chosen):
            self._note(f"judge graded {len(chosen)} of {len(scored)} answers (judge.max_per_run)")

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None
