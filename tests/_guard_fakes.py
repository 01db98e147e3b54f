"""Test doubles for the data guard: a small deterministic regex detector and an echo
provider (answers with what it received, so tests see exactly what left the gateway)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

from modelmix.guard import DataClass, Entity
from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse
from modelmix.testing import FakeProvider

PATTERNS = {
    "EMAIL_ADDRESS": re.compile(r"[a-z0-9.]+@[a-z0-9]+\.[a-z]{2,}"),
    "US_SSN": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
    "API_KEY": re.compile(r"\bsk-[A-Za-z0-9]{12,}\b"),
    "CREDIT_CARD": re.compile(r"\b4\d{3}(?: \d{4}){3}\b"),
}
CLASSES = {"US_SSN": DataClass.REGULATED, "CREDIT_CARD": DataClass.REGULATED,
           "EMAIL_ADDRESS": DataClass.CONFIDENTIAL, "API_KEY": DataClass.CONFIDENTIAL}


class RegexDetector:
    """Finds fake emails, SSNs, API keys and card numbers; classifies by the worst."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, text: str) -> list[Entity]:
        found = [Entity(etype, m.start(), m.end())
                 for etype, pattern in PATTERNS.items() for m in pattern.finditer(text)]
        found.sort(key=lambda e: e.start)
        out: list[Entity] = []
        for ent in found:
            if not out or ent.start >= out[-1].end:
                out.append(ent)
        return out

    def detect_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        self.calls += 1
        return [self.detect(t) for t in texts]

    def classify(self, entities: Sequence[Entity]) -> DataClass:
        return max((CLASSES[e.type] for e in entities), key=lambda c: c.rank,
                   default=DataClass.PUBLIC)


class BrokenDetector(RegexDetector):
    def detect_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        raise RuntimeError("model file missing")


def sent_text(request: ChatRequest) -> str:
    """Everything textual a provider received."""
    return request.model_dump_json()


class EchoProvider(FakeProvider):
    """Replies with the last message's text as received (placeholders and all)."""

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.reply = request.messages[-1].text()
        return await super().complete(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.reply = request.messages[-1].text()
        async for chunk in super().stream(request):
            yield chunk
