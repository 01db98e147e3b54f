"""The ``read`` step: what a request's media say (images, PDFs, audio), read locally --
OCR, PDF text, speech recognition -- for later steps to extract from or summarise
(docs/systems.md, docs/multimodal.md). Nothing leaves the machine to be read.

Example (the document-intake blueprint)::

    steps:
      read: {kind: read}
      fields:
        kind: model
        model: [open, proprietary]
        messages:
          - {role: user, content: "{{ read.text }}"}
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from modelmix.errors import InvalidRequest, ModelmixError
from modelmix.media import ReadMethod
from modelmix.systems._base import BuildContext, Step, StepOptions, StepRun, elapsed_ms
from modelmix.systems._contracts import MediaText, StepTrace

__all__ = ["ReadStep"]

#: ``x-modelmix-conversions`` order: ocr, pdf, asr.
_ORDER = {m.value: i for i, m in enumerate(ReadMethod)}


class ReadStep(Step):
    """Reads every media part of the request, in order, through the engine's media
    layer (cached by content, so a part the guard already read is not read twice).

    Outputs: ``text`` (each part's ``<media ...>`` block, joined by blank lines: what a
    model step sends), ``parts`` (``{part, kind, methods, text}`` per part) and
    ``conversions`` (how they were read, comma-separated as ``x-modelmix-conversions``
    lists them: ``ocr,pdf``; '' with no media).
    A request without media reads as no parts, unless ``required: true`` (then 400).

    A bad part fails the request with 400 / 413 naming it (InvalidMedia, MediaTooLarge);
    a part that cannot be read here (no reader installed, reading off) with 502: a
    system must not go on without its content. The step writes one usage row (no
    deployment; its latency and ``media_ms`` are the reading time, ``conversions`` how).
    """

    kind = "read"

    class Options(StepOptions):
        #: a request without an image, PDF or audio part is refused (400)
        required: bool = False

    def __init__(self, name: str, options: StepOptions, build: BuildContext):
        super().__init__(name, options, build)
        assert isinstance(options, ReadStep.Options)
        self.required = options.required

    async def run(self, run: StepRun) -> Mapping[str, Any]:
        run.trace.append(StepTrace(run.step))
        started = time.perf_counter()
        try:
            texts = await run.caller.read_media(run.request)
            if not texts and self.required:
                raise InvalidRequest("the request carries no image, PDF or audio part to "
                                     "read", param="messages")
        except ModelmixError as exc:
            self._record(run, started, [], exc)
            raise run.prefixed(exc) from None
        conversions = _conversions(texts)
        self._record(run, started, texts)
        run.notes.append(f"{run.step}: " + (
            f"{len(texts)} part{'s' if len(texts) != 1 else ''} ({conversions})" if texts
            else "no media"))
        return {"text": "\n\n".join(t.delimited for t in texts),
                "parts": [{"part": t.part, "kind": t.kind, "methods": list(t.methods),
                           "text": t.text} for t in texts],
                "conversions": conversions}

    @staticmethod
    def _record(run: StepRun, started: float, texts: Sequence[MediaText],
                exc: ModelmixError | None = None) -> None:
        """The step's usage row: reading time, how the parts were read, or why not."""
        rec = run.caller.new_record(run.call)
        rec.latency_ms = rec.media_ms = elapsed_ms(started)
        rec.conversions = _conversions(texts) or None
        if exc is not None:
            rec.status_code = exc.status_code
            rec.error, rec.error_type = exc.message, type(exc).__name__
        run.caller.record(rec)


def _conversions(texts: Sequence[MediaText]) -> str:
    """Every method used, once each, as ``x-modelmix-conversions`` lists them
    (``ocr,pdf``)."""
    return ",".join(sorted({m for t in texts for m in t.methods}, key=_ORDER.__getitem__))
