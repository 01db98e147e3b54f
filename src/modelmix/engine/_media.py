"""The media stage of a request: decode and check its media parts once, fetch allowed
image URLs, read them locally (OCR, PDF text, speech recognition) when the guard or a
conversion needs their text, and hold both forms of the request: ``raw`` (media as sent,
fetched URLs inlined) and ``converted`` (every read part replaced by its delimited text).
The service screens ``converted`` (so the guard sees what media say), then sends ``raw``
to a deployment that takes the media, or ``converted`` to one that does not
(docs/multimodal.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from modelmix.catalog import MediaSettings
from modelmix.errors import InvalidMedia, InvalidRequest, NoDeployment, PolicyDenied, StepFailed
from modelmix.media import (
    MediaKind,
    MediaPart,
    ReaderUnavailable,
    Reading,
    ReadMethod,
    ReadTimedOut,
)
from modelmix.media._clean import clean_image
from modelmix.media._convert import (
    as_text,
    inline_fetched,
    inline_images,
    text_part,
)
from modelmix.media._decode import RemoteImage, find_media, sniff
from modelmix.protocol import ChatRequest
from modelmix.routing import RouteDecision, Rule
from modelmix.systems import MediaText

if TYPE_CHECKING:
    from modelmix.engine._contracts import CallContext
    from modelmix.engine._service import ChatService
    from modelmix.guard import Guard, Screening
    from modelmix.media import MediaReader
    from modelmix.store import UsageRecord

__all__ = ["MediaPlan", "MediaStage", "decide_media", "has_media_parts", "media_view"]

Position = tuple[int, int]
_METHOD_ORDER = {m: n for n, m in enumerate(ReadMethod)}


def has_media_parts(request: ChatRequest) -> bool:
    """Whether any message carries an image, audio or file part."""
    return bool(request.media_parts())


@dataclass(slots=True)
class MediaPlan:
    """One request's media and the two forms of the request (see the module docstring).

    Attributes:
        raw: the request as received, fetched image URLs replaced by data URLs.
        parts: every media part, decoded (:class:`MediaPart`), or an image URL that was
            not fetched (:class:`RemoteImage`).
        readings: what was read, by (message, part) position.
        unread: why parts stayed unread, by their path (``messages.0.content.1``).
        converted: ``raw`` with every read part as text (unread parts as they were); None
            until :meth:`MediaStage.read` ran.
        ms: time spent reading, milliseconds.
    """

    raw: ChatRequest
    parts: list[MediaPart | RemoteImage]
    readings: dict[Position, Reading] = field(default_factory=dict)
    unread: dict[str, str] = field(default_factory=dict)
    converted: ChatRequest | None = None
    ms: float | None = None

    @property
    def positions(self) -> list[Position]:
        """Positions of the parts that were read."""
        return sorted(self.readings)

    @property
    def convertible(self) -> bool:
        """Whether every part was read (so the converted request holds no media)."""
        return self.converted is not None and not self.unread

    def methods(self) -> tuple[str, ...]:
        """How the read parts were converted (``ocr``, ``pdf``, ``asr``), in that order."""
        found = {m for r in self.readings.values() for m in r.methods}
        return tuple(m.value for m in sorted(found, key=_METHOD_ORDER.__getitem__))

    def summary(self) -> str:
        """The parts as JSON for the usage row: path, kind, type, size, digest; never
        content."""
        return orjson.dumps([
            {"part": p.where, "kind": p.kind.value, "type": p.mime, "bytes": p.size,
             "sha256": p.sha256} if isinstance(p, MediaPart)
            else {"part": p.where, "kind": "image", "type": "url", "bytes": None,
                  "sha256": None}
            for p in self.parts]).decode()


class MediaStage:
    """Decodes, fetches and reads media for the service (one per service: its readers'
    models load once and its content-hash cache is shared by every request)."""

    def __init__(self, settings: MediaSettings):
        self.settings = settings
        self._reader: MediaReader | None = None

    @property
    def reader(self) -> MediaReader:
        """The :class:`~modelmix.media.MediaReader` (built on first use: it imports the
        readers' libraries only when they are needed)."""
        if self._reader is None:
            from modelmix.media import MediaReader

            self._reader = MediaReader(self.settings)
        return self._reader

    async def plan(self, request: ChatRequest) -> MediaPlan | None:
        """Decode and check ``request``'s media (fetching allowed image URLs); None when
        it has none. Raises InvalidMedia (400) / MediaTooLarge (413) naming the part."""
        parts = find_media(request, self.settings)
        if not parts:
            return None
        fetched: dict[Position, MediaPart] = {}
        if self.settings.fetch.enabled:
            remote = [p for p in parts if isinstance(p, RemoteImage)]
            got = await asyncio.gather(*(self._fetch(p) for p in remote))
            fetched = {(p.message, p.index): g for p, g in zip(remote, got, strict=True)}
            parts = [fetched.get((p.message, p.index), p) for p in parts]
        return MediaPlan(inline_fetched(request, fetched), parts)

    async def _fetch(self, part: RemoteImage) -> MediaPart:
        from modelmix.media import fetch_image

        got = await fetch_image(part.url, self.settings.fetch, where=part.where)
        mime = sniff(got.data[:1100])
        if mime is None or not mime.startswith("image/"):
            raise InvalidMedia(f"{part.where}: the image URL did not return a supported "
                               "image (PNG, JPEG, GIF, WebP)", param=part.where)
        return MediaPart.of(part.where, part.message, part.index, MediaKind.IMAGE, mime,
                           got.data)

    async def read(self, plan: MediaPlan) -> None:
        """Read every decoded part whose reader is installed (concurrently; cached by
        content hash) and build ``plan.converted``. Parts stay unread when reading is off
        (``media.read``), their reader is not installed, or they are image URLs that were
        not fetched. Raises InvalidMedia when a part cannot be read (corrupt data...)."""
        if plan.converted is not None:
            return
        started = time.perf_counter()
        todo: list[MediaPart] = []
        for part in plan.parts:
            if isinstance(part, RemoteImage):
                plan.unread[part.where] = "image URL not fetched (media.fetch is off)"
            elif not self.settings.read:
                plan.unread[part.where] = "media reading is off (media.read)"
            else:
                todo.append(part)
        readings = await asyncio.gather(*(self._read(p) for p in todo),
                                        return_exceptions=True)
        for part, got in zip(todo, readings, strict=True):
            if isinstance(got, ReaderUnavailable):
                plan.unread[part.where] = str(got)
            elif isinstance(got, BaseException):
                raise got
            else:
                plan.readings[(part.message, part.index)] = got
        texts = {(p.message, p.index): text_part(as_text(p, plan.readings[(p.message,
                                                                           p.index)]))
                 for p in todo if (p.message, p.index) in plan.readings}
        plan.converted = plan.raw.with_parts(texts)
        plan.ms = (time.perf_counter() - started) * 1000

    async def texts(self, request: ChatRequest, plan: MediaPlan | None = None
                    ) -> list[MediaText]:
        """Every media part of ``request`` read, in order (a system's ``read`` step);
        ``plan``, when given, is ``request``'s plan already made (not decoded, fetched or
        read again).

        Raises InvalidMedia / MediaTooLarge for a bad part, StepFailed for a part that
        could not be read."""
        plan = plan or await self.plan(request)
        if plan is None:
            return []
        await self.read(plan)
        if plan.unread:
            where, why = next(iter(plan.unread.items()))
            raise StepFailed(f"{where} could not be read: {why}")
        out = []
        for part in plan.parts:
            assert isinstance(part, MediaPart)
            got = plan.readings[(part.message, part.index)]
            out.append(MediaText(part.where, part.kind.value, tuple(m.value for m in got.methods),
                                 got.text, as_text(part, got)))
        return out

    async def raw_view(self, plan: MediaPlan, guard: Guard, screening: Screening, *,
                       key_id: str | None, tags: Iterable[str]
                       ) -> tuple[ChatRequest, Screening, tuple[Rule, ...]]:
        """The request to send with its media as they are, under a data policy: the
        screening it is routed with and the extra router rules (docs/multimodal.md).

        What leaves must be what the guard read. Images are re-encoded as read (first
        frame on white, no metadata: media/_clean.py). PDFs and audio carry channels the
        readers do not read whole (metadata, annotations, attachments, tags, speech the
        recogniser misses), so as they are they count as unread (``media-unread``: the
        policy's strictest class) and the guard screens them so; their text, converted,
        is screened as read.

        Raises:
            PolicyDenied: the policy refuses these media as they are anywhere (the
                caller then converts them to text).
        """
        raw = await self._cleaned(plan)
        opaque = [(p.message, p.index) for p in plan.parts
                  if isinstance(p, MediaPart) and p.kind is not MediaKind.IMAGE
                  and (p.message, p.index) in plan.readings]
        base = screening
        if opaque:
            assert plan.converted is not None
            view = plan.converted.with_parts({pos: raw.part(*pos) for pos in opaque})
            base = await guard.screen(view, key_id=key_id, tags=tags)
            base.enforce()
        images = [pos for pos in plan.positions if pos not in opaque]
        view_screening, rules = base.with_media(raw, images)
        return raw, view_screening, rules

    async def _cleaned(self, plan: MediaPlan) -> ChatRequest:
        """``plan.raw`` with each read image re-encoded as it was read."""
        images = [p for p in plan.parts if isinstance(p, MediaPart)
                  and p.kind is MediaKind.IMAGE and (p.message, p.index) in plan.readings]
        if not images:
            return plan.raw
        cleaned = await asyncio.gather(*(asyncio.to_thread(clean_image, p.data, p.mime)
                                         for p in images))
        return inline_images(plan.raw, {(p.message, p.index): got
                                        for p, got in zip(images, cleaned, strict=True)})

    async def _read(self, part: MediaPart) -> Reading:
        timeout = self.settings.read_timeout_s
        try:
            return await asyncio.wait_for(self.reader.read(part), timeout)
        except TimeoutError:
            raise ReadTimedOut(f"reading took over {timeout:g}s (media.read_timeout_s)"
                               ) from None

    async def aclose(self) -> None:
        if self._reader is not None:
            await self._reader.aclose()


async def decide_media(service: ChatService, plan: MediaPlan, ctx: CallContext,
                       rec: UsageRecord) -> tuple[RouteDecision, ChatRequest]:
    """Route a request carrying media (docs/multimodal.md): read them when the guard
    or ``media.convert: always`` needs their text; screen the converted form; send
    the media as they are to a deployment that takes them and that the policy lets
    see them, else their text to any deployment."""
    guard = ctx.guard or service.guard
    mode = service.config.media.convert
    rec.media = plan.summary()
    if guard is not None or mode == "always":
        await _read_media(service, plan, rec)
    screening = None
    if guard is not None:
        screening = ctx.screening = await guard.screen(
            plan.converted or plan.raw, rec, key_id=ctx.key_id, tags=ctx.tags)
        screening.enforce()
    if mode != "always" or not plan.convertible:
        try:
            raw, rules = plan.raw, tuple[Rule, ...]()
            if screening is not None:
                assert guard is not None
                raw, ctx.screening, rules = await service.media.raw_view(
                    plan, guard, screening, key_id=ctx.key_id, tags=ctx.tags)
            decision = service.route(raw, ctx, rules=rules, quiet=True)
            if ctx.screening is not None:  # the audit of what is sent
                rec.audit = ctx.screening.audit
            return decision, raw
        except (NoDeployment, PolicyDenied, InvalidRequest) as exc:  # none takes them
            ctx.screening = screening
            if mode == "never":
                raise
            if service.config.media.read:
                await _read_media(service, plan, rec)
            if not plan.convertible:
                if not isinstance(exc, PolicyDenied) and plan.unread:
                    _refuse_unread(plan)
                raise
    assert plan.converted is not None
    decision = service.route(plan.converted, ctx)
    ctx.conversions = plan.methods()
    rec.conversions = ",".join(ctx.conversions) or None
    return dataclasses.replace(decision, reason=(
        f"{decision.reason}; media converted to text ({rec.conversions})")), plan.converted


def _refuse_unread(plan: MediaPlan) -> None:
    """No deployment takes the media as they are and some could not be read, so they
    cannot be converted either: refuse naming the first such part (InvalidMedia, 400).
    A policy's refusal (PolicyDenied) is left to say why itself."""
    where, why = next(iter(plan.unread.items()))
    raise InvalidMedia(f"{where}: no deployment here takes this part as it is, and it "
                       f"could not be converted to text ({why})", param=where)


async def media_view(service: ChatService, request: ChatRequest,
                     rec: UsageRecord | None = None) -> tuple[ChatRequest, MediaPlan | None]:
    """``request`` as the guard reads it: its media read and replaced by their text
    (parts that cannot be read stay as they are), with the media plan (None, and
    ``request`` itself, without media). Raises InvalidMedia / MediaTooLarge."""
    plan = await service.media.plan(request) if has_media_parts(request) else None
    if plan is None:
        return request, None
    await service.media.read(plan)
    if rec is not None:
        rec.media, rec.media_ms = plan.summary(), plan.ms
    assert plan.converted is not None
    return plan.converted, plan


async def _read_media(service: ChatService, plan: MediaPlan, rec: UsageRecord) -> None:
    await service.media.read(plan)
    rec.media_ms = plan.ms
