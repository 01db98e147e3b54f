"""One request as the guard sees it: the :class:`Screening` (verdict, audit, the request
as received / redacted / pseudonymised) and :class:`GuardedProvider`, the provider seen
through it (re-checks the deployment, sends placeholders where the policy says so,
restores them in the answer, scrubs raw values out of upstream errors). Built by
:meth:`~modelmix.guard.Guard.screen` (guard/_actions.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from modelmix.catalog import Deployment
from modelmix.errors import ModelmixError, PolicyDenied
from modelmix.guard._policy import Action, Verdict
from modelmix.guard._pseudonym import ChunkRestorer, Pseudonymizer
from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse
from modelmix.providers import Provider
from modelmix.routing import Exclusion, ExclusionKind, PolicyContext, Rule
from modelmix.store import AuditRecord, UsageRecord

__all__ = ["GuardedProvider", "Screening"]

_LOGPROBS = ("logprobs: token logprobs would show the placeholders the data policy sends "
             "instead of the values it pseudonymises")
_MEDIA_LOCKED = ("its media hold values the data policy pseudonymises, and media cannot "
                 "be pseudonymised (they may be sent as text instead)")


@dataclass(slots=True)
class Screening:
    """The guard's view of one request (see the module docstring).

    Attributes:
        verdict: what the policy decided.
        audit: the audit record (its ``forbidden`` list fills in as the router filters).
        original / redacted / outgoing: the request as received; with every detected
            value replaced (for routing, logs and records); with the values the policy
            pseudonymises replaced (sent to deployments that may not see them raw).
    """

    verdict: Verdict
    audit: AuditRecord
    original: ChatRequest
    redacted: ChatRequest
    outgoing: ChatRequest
    pseudonymizer: Pseudonymizer
    failure: str | None = None
    #: Media sent as they are hold values the verdict pseudonymises (their text, read
    #: by the guard, did): such a request may only go where those values may go raw.
    media_locked: bool = False
    _wrapped: dict[str, GuardedProvider] = field(default_factory=dict)

    def enforce(self) -> None:
        """Raise PolicyDenied (403) when the verdict blocks the request."""
        v = self.verdict
        if v.action is not Action.BLOCK:
            return
        found = ", ".join(f"{t} x{n}" for t, n in sorted(self.audit.entities.items()))
        why = v.reason or f"{v.data_class.value} data may not be sent to any model"
        detail = f" Detected: {found}." if found else ""
        raise PolicyDenied(
            f"Request blocked by data policy '{v.policy}' (rule {v.rule}): {why}.{detail}",
            code="data_detection_failed" if self.failure else "data_policy_blocked",
        )

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Policy-filter rules for the router (none when nothing limits deployments):
        the verdict's scopes; for a request asking for ``logprobs`` that would be sent
        pseudonymised, only deployments allowed its raw values (the logprobs' tokens
        cannot be restored)."""
        rules: tuple[Rule, ...] = ()
        if self.verdict.constrained or self.verdict.action is Action.BLOCK:
            rules = (self._rule,)
        if self.original.logprobs and self.outgoing is not self.original:
            rules = (*rules, self._logprobs_rule)
        return rules

    def _logprobs_rule(self, dep: Deployment, ctx: PolicyContext) -> Exclusion | None:
        if self.verdict.raw_allowed(dep):
            return None
        return Exclusion(ExclusionKind.CAPABILITY, _LOGPROBS)

    def _rule(self, dep: Deployment, ctx: PolicyContext) -> Exclusion | None:
        why = self.verdict.refuses(dep)
        if why is None:
            return None
        if dep.name not in self.audit.forbidden:
            self.audit.forbidden.append(dep.name)
        return Exclusion(ExclusionKind.POLICY, why)

    def with_media(self, raw: ChatRequest, positions: list[tuple[int, int]]
                   ) -> tuple[Screening, tuple[Rule, ...]]:
        """This screening, of a request whose media parts at ``positions`` were read and
        replaced by their text, for sending ``raw`` instead: the same request with its
        media as they are. The routing and logging view (``redacted``) stays the text
        one; ``outgoing`` becomes ``raw`` with its texts pseudonymised and its media
        raw. Media cannot be pseudonymised, so when their text held a value the verdict
        pseudonymises, the returned rule keeps the request on deployments allowed to
        see raw values, and :meth:`request_for` refuses the others (docs/multimodal.md).

        Returns:
            (the screening for ``raw``, extra router rules).
        """
        if not positions:
            return self, ()
        locked = any(self.outgoing.part(m, i) != self.original.part(m, i)
                     for m, i in positions)
        outgoing = self.outgoing.with_parts({(m, i): raw.part(m, i) for m, i in positions})
        view = replace(self, original=raw, outgoing=outgoing, media_locked=locked,
                       _wrapped={})
        return view, ((view._media_rule,) if locked else ())

    def _media_rule(self, dep: Deployment, ctx: PolicyContext) -> Exclusion | None:
        if self.verdict.raw_allowed(dep):
            return None
        return Exclusion(ExclusionKind.POLICY, _MEDIA_LOCKED)

    @property
    def active(self) -> bool:
        """Whether calls need wrapping (something was found or deployments are limited)."""
        return bool(len(self.pseudonymizer)) or self.verdict.constrained or self.media_locked

    def providers(self, base: Mapping[str, Provider]) -> Mapping[str, Provider] | None:
        """``base`` with each provider wrapped for this request (None: no need)."""
        return _GuardedProviders(base, self) if self.active else None

    def scrub(self, text: str) -> str:
        """``text`` with every detected value of this request replaced by a placeholder."""
        return self.pseudonymizer.replace_known(text)

    @contextmanager
    def scrubbing(self) -> Iterator[None]:
        """Scrub raw values out of a modelmix error raised inside (upstreams may echo
        the prompt in their error messages)."""
        try:
            yield
        except ModelmixError as exc:
            exc.message = self.scrub(exc.message)
            exc.args = (exc.message,)
            raise

    def scrub_record(self, rec: UsageRecord) -> None:
        """Scrub the kept prompt and answer and the error of ``rec``."""
        if rec.prompt:
            rec.prompt = self.scrub(rec.prompt)
        if rec.response:
            rec.response = self.scrub(rec.response)
        if rec.error:
            rec.error = self.scrub(rec.error)
        if rec.requested_model:
            rec.requested_model = self.scrub(rec.requested_model)

    def request_for(self, dep: Deployment) -> tuple[ChatRequest, bool]:
        """What ``dep`` may receive, and whether it carries placeholders.

        Raises PolicyDenied when the verdict refuses ``dep`` (the router's filter already
        keeps such deployments out; this is the last line)."""
        why = self.verdict.refuses(dep)
        if why is not None:
            raise PolicyDenied(f"{dep.name}: {why}")
        if self.verdict.raw_allowed(dep) or self.outgoing is self.original:
            return self.original, False
        if self.media_locked:
            raise PolicyDenied(f"{dep.name}: {_MEDIA_LOCKED}")
        if self.original.logprobs:
            raise PolicyDenied(f"{dep.name}: {_LOGPROBS}")
        return self.outgoing, True


class _GuardedProviders(Mapping[str, Provider]):
    """The service's providers as one request sees them: each one guarded."""

    def __init__(self, base: Mapping[str, Provider], screening: Screening):
        self._base = base
        self._screening = screening

    def __getitem__(self, name: str) -> Provider:
        wrapped = self._screening._wrapped.get(name)
        if wrapped is None:
            wrapped = GuardedProvider(self._base[name], self._screening)
            self._screening._wrapped[name] = wrapped
        return wrapped

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)


class GuardedProvider(Provider):
    """A provider seen through one request's :class:`Screening`.

    It never closes the provider it wraps (that one is shared by every request).
    """

    def __init__(self, inner: Provider, screening: Screening):
        super().__init__(inner.deployment)
        self.inner = inner
        self.screening = screening

    async def complete(self, request: ChatRequest) -> ChatResponse:
        sent, pseudo = self.screening.request_for(self.deployment)
        with self.screening.scrubbing():
            response = await self.inner.complete(sent)
        return self.screening.pseudonymizer.restore_response(response) if pseudo else response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        sent, pseudo = self.screening.request_for(self.deployment)
        restorer = ChunkRestorer(self.screening.pseudonymizer) if pseudo else None
        upstream = aiter(self.inner.stream(sent))
        last: ChatChunk | None = None
        try:
            with self.screening.scrubbing():
                async for chunk in upstream:
                    last = chunk
                    yield chunk if restorer is None else restorer.feed(chunk)
        finally:
            aclose = getattr(upstream, "aclose", None)
            if aclose is not None:
                await aclose()
        tail = restorer.leftover(last) if restorer is not None else None
        if tail is not None:
            yield tail
