"""Applying a data policy to one request: allow, route-local, pseudonymise or block.

:meth:`Guard.screen` detects sensitive entities in every text a request would carry
upstream (:func:`~modelmix.guard._texts.request_texts`: message contents and names, tool
calls, tool definitions, schemas, ``stop``, ``user``, metadata and extra fields, keys
included; across text boundaries by :mod:`~modelmix.guard._context`), classifies the
request and asks the :class:`~modelmix.guard.Policy` for a :class:`~modelmix.guard.Verdict`
(a stacked guard, :meth:`Guard.stacked`, asks each of its policies and keeps the strictest:
:mod:`~modelmix.guard._stack`). The entity types its policies declare themselves
(``patterns:``, :mod:`~modelmix.guard._policy_patterns`) are found alongside the
detector's, on the same texts, and treated like them from then on.
The resulting :class:`~modelmix.guard._screening.Screening` then

- refuses a blocked request (:meth:`Screening.enforce`, PolicyDenied naming the rule and
  the entity types, never their values);
- gives the router a policy-filter rule keeping out every deployment the verdict
  refuses, so neither the first choice nor any fallback or retry can reach one;
- wraps each provider of the request's candidates in a ``GuardedProvider`` (a
  Provider itself) that re-checks the deployment, sends placeholders instead of raw
  values where the policy says so, restores them in the answer (streams included) and
  scrubs raw values out of upstream error messages;
- fills the request's :class:`~modelmix.store.AuditRecord` and scrubs the usage record's
  kept prompt, answer and error.

All of it is per request: a Screening and its placeholders are never shared.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from modelmix.catalog import Config
from modelmix.errors import ConfigError
from modelmix.guard._base import DataClass, Detector, Entity
from modelmix.guard._context import join_straddling, key_context
from modelmix.guard._media import has_media
from modelmix.guard._policy import POLICY_ENV, Action, Policy, Verdict
from modelmix.guard._policy_files import PolicyRef, load_policy, resolve_policy_ref
from modelmix.guard._policy_patterns import PatternDetector, PolicyPatterns
from modelmix.guard._pseudonym import Pseudonymizer
from modelmix.guard._screening import Screening
from modelmix.guard._stack import STACK_SEPARATOR, policy_verdict, stack_verdicts
from modelmix.guard._texts import TextMap, check_text_count, request_texts, rewrite
from modelmix.protocol import ChatRequest
from modelmix.store import AuditRecord, UsageRecord

__all__ = ["Guard", "guard_from_config", "stack_policy"]

#: Requests with at most this many characters of text are scanned on the event loop.
_INLINE_CHARS = 2_000


class Guard:
    """Screens requests against a policy with a detector; one per service.

    Args:
        policy: the data policy (:meth:`stacked` adds more).
        detector: a :class:`~modelmix.guard.Detector`, or a function building one on
            first use (``load_detector``), so start-up stays fast.
        in_thread: run detection of requests longer than 2,000 characters in a worker
            thread (keeps the event loop free while a slow detector works; shorter texts
            take well under a millisecond with the built-in detector).

    The guard is also a :class:`~modelmix.engine._service.ServiceObserver`: registered first,
    it scrubs each screened request's usage record before other observers and sinks
    see it.

    Attributes:
        policy: the first policy (the service's, for a stacked guard).
        policies: every policy the guard enforces, ``policy`` first.

    Example::

        guard = Guard(load_policy("healthcare"), load_detector)
        service = ChatService(config, guard=guard)
    """

    def __init__(self, policy: Policy, detector: Detector | Callable[[], Detector], *,
                 in_thread: bool = True):
        self.policy = policy
        self.policies: tuple[Policy, ...] = (policy,)
        self._patterns = PolicyPatterns([policy.patterns])
        self._detector: Detector | None = None
        self._factory: Callable[[], Detector] | None = None
        if callable(detector) and not hasattr(detector, "detect"):
            self._factory = detector
        else:
            self._detector = detector  # type: ignore[assignment]
        self._lock = threading.Lock()
        self._in_thread = in_thread
        self._open: dict[int, tuple[UsageRecord, Screening]] = {}

    def __repr__(self) -> str:
        return f"Guard(policy={self.name!r})"

    @property
    def name(self) -> str:
        """The policy's name; a stacked guard's joins its policies' (``finance+healthcare``)."""
        return STACK_SEPARATOR.join(p.name for p in self.policies)

    def stacked(self, *policies: Policy) -> Guard:
        """A guard enforcing this guard's policies and ``policies``: never less than any.

        It shares this guard's detector (built once, whichever guard needs it first) and
        its open records, so this guard, registered as the service's observer, also
        scrubs the usage records of requests the stacked guard screened. Each request is
        scanned once; every policy then decides with its own entity classes, key and
        tenant overrides, tags and unread-media treatment, and the verdicts fold into
        the strictest (see :mod:`modelmix.guard._stack`: rules are prefixed with their
        policy's name, ``healthcare:classes.regulated``). Every policy's own entity
        patterns (``patterns:``) run on each request as well. A policy already enforced is
        not added twice; with nothing new, this guard is returned.

        Example::

            system_guard = service.guard.stacked(load_policy("healthcare"))
        """
        chosen = list(self.policies)
        for policy in policies:
            if policy not in chosen:
                chosen.append(policy)
        if len(chosen) == len(self.policies):
            return self
        source = self._detector if self._detector is not None else self._shared_detector
        guard = Guard(chosen[0], source, in_thread=self._in_thread)
        guard.policies = tuple(chosen)
        guard._patterns = PolicyPatterns(p.patterns for p in chosen)
        guard._open = self._open
        return guard

    def _shared_detector(self) -> Detector:
        return self.detector

    @property
    def detector(self) -> Detector:
        """The detector (built on first use when given as a factory)."""
        if self._detector is None:
            with self._lock:
                if self._detector is None:
                    assert self._factory is not None
                    self._detector = self._factory()
        return self._detector

    def warm(self) -> None:
        """Build the detector now (blocking; call off the event loop)."""
        _ = self.detector

    async def screen(self, request: ChatRequest, rec: UsageRecord | None = None, *,
                     key_id: str | None = None, tags: Iterable[str] = ()) -> Screening:
        """Detect, classify and decide for ``request``; never raises for a blocked
        request (call :meth:`Screening.enforce`). ``rec``, when given, gets the audit
        record and is scrubbed when it is finished.

        Raises:
            InvalidRequest: more than :data:`~modelmix.guard._texts.MAX_TEXTS` texts.
        """
        texts = request_texts(request)
        check_text_count(request, texts)
        try:
            if self._in_thread and sum(map(len, texts)) > _INLINE_CHARS:
                found = await asyncio.to_thread(self._detect, texts)
            else:
                found = self._detect(texts)
            screening = self._decide(request, texts, found, key_id, tuple(tags))
        except Exception as exc:  # fail closed: nothing leaves without a verdict
            screening = self._failed(request, tuple(tags), type(exc).__name__)
        if rec is not None:
            rec.audit = screening.audit
            if rec.prompt:
                rec.prompt = screening.scrub(rec.prompt)
            self._open[id(rec)] = (rec, screening)
        return screening

    def redact(self, text: str) -> str:
        """``text`` with every entity the guard detects in it (its policies' own types
        included) replaced by ``<TYPE>``: for texts built from a request that are stored
        or logged but were never screened themselves (a verifier's reason quoting an
        answer, a tool's error)."""
        if not text:
            return text
        (entities,), _ = self._detect([text])
        for e in sorted(entities, key=lambda e: e.start, reverse=True):
            text = f"{text[:e.start]}<{e.type}>{text[e.end:]}"
        return text

    def _detect(self, texts: Sequence[str]) -> tuple[list[list[Entity]], DataClass]:
        detector: Detector = self.detector
        if len(self._patterns):  # the policies' own entity types, merged in
            detector = PatternDetector(detector, self._patterns)
        found = detector.detect_many(texts) if texts else []
        if len(texts) > 1:
            found = key_context(detector, texts, join_straddling(detector, texts, found))
        return found, detector.classify([e for ents in found for e in ents])

    def _decide(self, request: ChatRequest, texts: list[str],
                found: tuple[list[list[Entity]], DataClass], key_id: str | None,
                tags: tuple[str, ...]) -> Screening:
        per_text, detected = found
        counts = Counter(e.type for ents in per_text for e in ents)
        media = has_media(request)
        verdict = stack_verdicts([
            policy_verdict(p, detected, counts, key_id=key_id, tags=tags, media=media)
            for p in self.policies])
        data_class = verdict.data_class
        pseudo = Pseudonymizer(avoid="\n".join(texts))
        for text, ents in zip(texts, per_text, strict=True):
            pseudo.learn(text, ents)
        redacted = outgoing = request
        if counts:
            redacted = rewrite(request, _span_replacer(pseudo, per_text, None))
            types = verdict.pseudonymise
            if verdict.pseudonymising:
                outgoing = (redacted if types is None else
                            rewrite(request, _span_replacer(pseudo, per_text, types)))
        replaced = sum(1 for t in pseudo.placeholders.values() if verdict.pseudonymises(t))
        audit = AuditRecord(policy=verdict.policy, data_class=data_class.value,
                            action=verdict.action.value, rule=verdict.rule,
                            rules=list(verdict.rules), entities=dict(sorted(counts.items())),
                            pseudonymised=replaced, tags=list(tags))
        return Screening(verdict, audit, request, redacted, outgoing, pseudo)

    def _failed(self, request: ChatRequest, tags: tuple[str, ...], error: str) -> Screening:
        verdict = Verdict(self.name, DataClass.REGULATED, Action.BLOCK,
                          "detection-error", ("detection-error",),
                          reason=f"sensitive-data detection failed ({error}), so the request "
                                 "was refused")
        audit = AuditRecord(policy=self.name, data_class=DataClass.REGULATED.value,
                            action=Action.BLOCK.value, rule="detection-error",
                            rules=["detection-error"], tags=list(tags))
        return Screening(verdict, audit, request, request, request, Pseudonymizer(),
                         failure=error)

    # -- ServiceObserver ---------------------------------------------------------------------

    def routed(self, request: ChatRequest, ctx: Any, decision: Any, seconds: float) -> None:
        return None

    def finished(self, rec: UsageRecord, attempts: Sequence[Any]) -> None:
        """Scrub ``rec`` with its request's screening before it is logged or stored."""
        entry = self._open.pop(id(rec), None)
        if entry is not None and entry[0] is rec:
            entry[1].scrub_record(rec)


def _span_replacer(pseudo: Pseudonymizer, per_text: list[list[Entity]],
                   types: frozenset[str] | None) -> TextMap:
    """A text map replacing, text after text, the entities found in that text."""
    entities = iter(per_text)

    def replace(text: str) -> str:
        return pseudo.replace_spans(text, next(entities), types)

    return replace


def guard_from_config(config: Config, env: Mapping[str, str] | None = None, *,
                      detector: Detector | Callable[[], Detector] | None = None
                      ) -> Guard | None:
    """The guard for ``config.policy``, with ``detector`` or else the built-in one (loaded
    on first use); None when no policy is set. The policy is parsed here, once.

    ``env``, when given (the gateway passes ``os.environ``), may override the policy
    through ``$MODELMIX_POLICY`` (``none`` turns the guard off); the library reads no
    environment variable unless asked this way.

    Raises:
        ConfigError: a bad policy (naming the catalog's ``policy`` field or
            ``$MODELMIX_POLICY``, the policy file, rule and field), or no detector
            available to enforce it.
    """
    ref = resolve_policy_ref(config.policy, env) if env is not None else config.policy
    if ref is None:
        return None
    try:
        policy = load_policy(ref)
    except ConfigError as exc:
        where = (f'{config.source}: field "policy"' if ref is config.policy
                 else f"${POLICY_ENV}")
        raise ConfigError(f"{where}: {exc.message}") from exc
    if detector is None:
        detector = _builtin_detector(policy, config.guard_ner)
    return Guard(policy, detector)


def stack_policy(base: Guard | None, ref: PolicyRef | None, *, where: str,
                 detector: Detector | Callable[[], Detector] | None = None,
                 ner: Literal["none", "presidio"] = "none") -> Guard | None:
    """The guard for calls that must obey ``base``'s policies and the policy ``ref``
    (a system of models' ``policy``): never less than either.

    ``ref`` is read as the catalog's ``policy`` is (a ready policy's name, a policy file,
    relative to the working directory, or an inline mapping), parsed here, so call it
    once per system when the service is built, not per request. No environment variable
    is read: ``$MODELMIX_POLICY`` replaces the gateway's policy, never a system's.

    Args:
        base: the service's guard (None: the gateway enforces no policy).
        ref: the policy to add (None: none, so ``base`` is returned).
        where: what declared ``ref``, for errors, e.g.
            ``cat.yaml: system "healthcare-triage", field "policy"``.
        detector / ner: the detector when ``base`` is None (default: the built-in one
            with ``ner``, loaded on first use); a stacked guard shares ``base``'s.

    Returns:
        ``base.stacked(policy)``, or a new guard when ``base`` is None (register it as
        the service's first observer, as the service does with its own guard, so that
        it scrubs the usage records of the requests it screens); None when neither
        sets a policy.

    Raises:
        ConfigError: a bad policy (naming ``where``, the policy file, rule and field),
            or no detector available to enforce it.

    Example::

        guard = stack_policy(service.guard, "healthcare",
                             where='cat.yaml: system "healthcare-triage", field "policy"')
    """
    if ref is None:
        return base
    try:
        policy = load_policy(ref)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from exc
    if base is not None:
        return base.stacked(policy)
    if detector is None:
        detector = _builtin_detector(policy, ner)
    return Guard(policy, detector)


def _builtin_detector(policy: Policy, ner: Literal["none", "presidio"]
                      ) -> Callable[[], Detector]:
    """The built-in detector's factory (loaded on first use). Raises ConfigError when
    detection is not available."""
    try:
        from modelmix.guard._detect import load_detector
    except ImportError as exc:
        raise ConfigError(f"policy {policy.name!r} is set but sensitive-data detection "
                          f"is not available: {exc}") from exc
    return functools.partial(load_detector, ner=ner) if ner != "none" else load_detector
