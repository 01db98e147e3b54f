"""Media the guard could not read: fail closed.

The service reads media before screening (OCR, PDF text, speech recognition: see
docs/multimodal.md) and the guard screens their text in their place. A part still
present as media when the guard screens was not read: its reader is not installed,
``media.read`` is off, or it is an image URL the gateway does not fetch. Such a request
is treated as holding the policy's strictest class, and, since media cannot be
pseudonymised, a pseudonymising verdict keeps it on local and self-hosted deployments.
The rule is named ``media-unread`` (docs/guard.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from modelmix.guard._base import DataClass
from modelmix.guard._policy import LOCAL_HOSTING, Action, Policy, Scope, Verdict
from modelmix.protocol import ChatRequest

__all__ = ["MEDIA_RULE", "has_media", "unread_media_verdict"]

#: Rule name of the fail-closed treatment of media the guard cannot read.
MEDIA_RULE = "media-unread"


def has_media(request: ChatRequest) -> bool:
    """Whether any message carries an image, audio or file part."""
    return bool(request.media_parts())


def unread_media_verdict(policy: Policy, verdict: Verdict, counts: Mapping[str, int],
                     key_id: str | None, tags: tuple[str, ...]) -> Verdict:
    """The verdict for a request carrying images, audio or files that were not read:
    they count as the policy's strictest class (the class whose
    rule acts most strictly, the higher class on a tie), and since media cannot be
    pseudonymised, a pseudonymising verdict keeps the request on local and
    self-hosted deployments. Fail closed: unread media never reaches a deployment
    that the strictest class would refuse. The rule is named ``media-unread``."""
    if verdict.action is Action.BLOCK:
        return verdict
    strictest = max(
        (policy.evaluate(c, {}, key_id=key_id, tags=tags) for c in DataClass),
        key=lambda v: (v.action.rank, v.data_class.rank))
    data_class = max(verdict.data_class, strictest.data_class, key=lambda c: c.rank)
    worst = policy.evaluate(data_class, counts, key_id=key_id, tags=tags)
    action = max(worst.action, strictest.action, key=lambda a: a.rank)
    scopes = [(MEDIA_RULE, scope) for _, scope in strictest.scopes]
    if action is Action.PSEUDONYMISE:  # media cannot be pseudonymised: keep it local
        action = Action.ROUTE_LOCAL
        scopes.append((MEDIA_RULE, Scope(hosting=LOCAL_HOSTING)))
    if data_class is verdict.data_class and action is verdict.action:
        return replace(verdict, scopes=(*verdict.scopes, *scopes))
    return replace(worst, action=action, rule=MEDIA_RULE,
                   rules=(MEDIA_RULE, *worst.rules), scopes=(*scopes, *worst.scopes),
                   reason=(f"it carries images, audio or files that were not read, or not "
                           f"read whole (see docs/multimodal.md), so they count as "
                           f"{data_class.value} data"
                           if action is Action.BLOCK else None))
