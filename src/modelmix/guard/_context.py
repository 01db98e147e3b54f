"""Detection across the texts of one request.

The guard scans a request as a list of texts (message contents, text parts, tool arguments,
JSON keys and values, in a fixed order) with any :class:`~modelmix.guard.Detector`. Two
things escape a text-by-text scan, and this module adds them back: an identifier split over
two consecutive texts (:func:`join_straddling`), and a short JSON value whose cue is its key
(:func:`key_context`).
"""

from __future__ import annotations

from collections.abc import Sequence

from modelmix.guard._base import Detector, Entity

__all__ = ["STRADDLE_WINDOW", "join_straddling", "key_context"]


#: Characters each side of a boundary between two texts that :func:`join_straddling`
#: reads: longer than any identifier it looks for (an IBAN has at most 34 characters plus
#: spaces) with room for the cue before it ("card number:").
STRADDLE_WINDOW = 64


def join_straddling(detector: Detector, texts: Sequence[str],
                    found: list[list[Entity]]) -> list[list[Entity]]:
    """Add the entities that straddle two consecutive texts to both texts' lists.

    A request can split one identifier over two messages ("my card is 4111 1111" then
    "1111 1111") or two text parts ("ssn 536-22-", "1874"); scanning each text alone finds
    neither half. Where the last token of one text and the first of the next could be part
    of an identifier (one of them holds a digit, ``@``, ``-`` or ``_``), this scans the last
    and first :data:`STRADDLE_WINDOW` characters of the pair, joined directly and by a
    space, and keeps the entities that cross the join: each text gets its part (with the
    whole entity's type and score), replacing entities it overlaps there. An entity already
    found whole at the end of one text (or the start of the next) is not extended.

    Args:
        detector: any :class:`~modelmix.guard.Detector`.
        texts: the texts, in request order.
        found: ``detector.detect_many(texts)``; not modified.

    Returns:
        Per text, entities sorted by start and non-overlapping, offsets into that text.
    """
    result = [list(ents) for ents in found]
    for i in range(len(texts) - 1):
        left, right = texts[i][-STRADDLE_WINDOW:], texts[i + 1][:STRADDLE_WINDOW]
        if not _may_straddle(left, right):
            continue
        cut = len(left)
        offset = len(texts[i]) - cut
        whole = {(e.type, "left") for e in found[i] if e.end == len(texts[i])} | {
            (e.type, "right") for e in found[i + 1] if e.start == 0}
        for sep in ("", " "):
            for e in detector.detect(left + sep + right):
                if e.start >= cut or e.end <= cut + len(sep):
                    continue  # inside one text: already found there
                if (e.type, "left") in whole or (e.type, "right") in whole:
                    continue  # an entity complete in one text, run on into the other
                result[i] = _with(result[i], Entity(e.type, offset + e.start,
                                                    len(texts[i]), e.score))
                result[i + 1] = _with(result[i + 1], Entity(
                    e.type, 0, e.end - cut - len(sep), e.score))
    return result


_JOINERS = frozenset("0123456789@-_")


def _may_straddle(left: str, right: str) -> bool:
    """Whether the last token of ``left`` and the first of ``right`` could belong to one
    identifier (keeps the extra scans off ordinary chat turns)."""
    tail, head = left.split(), right.split()
    if not tail or not head:
        return False
    return bool(_JOINERS.intersection(tail[-1]) or _JOINERS.intersection(head[0]))


def _with(entities: list[Entity], part: Entity) -> list[Entity]:
    kept = [e for e in entities if e.end <= part.start or e.start >= part.end]
    return sorted([*kept, part], key=lambda e: e.start)


#: Longest text read as a JSON key by :func:`key_context`, and longest value.
_KEY_CHARS, _VALUE_CHARS = 40, 200


def key_context(detector: Detector, texts: Sequence[str],
                found: list[list[Entity]]) -> list[list[Entity]]:
    """Detect a short value with the key before it as its cue.

    The guard scans a request's JSON keys and values as separate texts, key first, so in
    ``{"patient": "Eleanor Whitcombe", "ssn": "536-22-8761"}`` neither value has the cue a
    detector needs. For each text of at most 200 characters in which nothing was found,
    after a text of at most 40 characters and three words (a key: ``_`` and ``-`` read as
    spaces), this scans ``"<key>: <value>"`` and keeps the entities that lie wholly in the
    value.

    Returns:
        ``found`` with those entities added (a new list; ``found`` is not modified).
    """
    result = [list(ents) for ents in found]
    for i in range(len(texts) - 1):
        key, value = texts[i], texts[i + 1]
        if (result[i + 1] or not value.strip() or len(value) > _VALUE_CHARS
                or not key.strip() or len(key) > _KEY_CHARS or len(key.split()) > 3):
            continue
        prefix = key.strip().replace("_", " ").replace("-", " ") + ": "
        shift = len(prefix)
        result[i + 1] = [Entity(e.type, e.start - shift, e.end - shift, e.score)
                         for e in detector.detect(prefix + value) if e.start >= shift]
    return result
