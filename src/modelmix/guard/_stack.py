"""Several data policies over one request: each decides on its own, the strictest wins.

A system of models may declare its own policy (``policy: healthcare``) on top of the
gateway's; its model calls must then satisfy both, never less than either. A stacked
:class:`~modelmix.guard.Guard` (:meth:`~modelmix.guard.Guard.stacked`) detects once
(the detector's entities and those of every policy's own patterns,
:mod:`~modelmix.guard._policy_patterns`), asks every policy for a
:class:`~modelmix.guard.Verdict` (:func:`policy_verdict`: its own ``entity_classes``, key
and tenant overrides, tags and unread-media treatment), and folds them into one
(:func:`stack_verdicts`), so screening, routing, pseudonymisation and the audit work on
it unchanged:

- the highest data class and the strictest action (block > route-local > pseudonymise >
  allow); the deciding rule is the first policy with that action's, prefixed with the
  policy's name (``healthcare:classes.regulated``), and so is every rule and scope;
- a deployment must satisfy every scope of every policy;
- values are pseudonymised when any policy pseudonymises (the union of their entity
  types; all of them when one says all), and raw values go only where every
  pseudonymising policy lets them (one that sends them nowhere sends them nowhere);
- the policy is named by the policies' names joined with ``+`` (``finance+healthcare``).

With one policy the verdict is that policy's, unchanged.

Example::

    verdicts = [policy_verdict(p, DataClass.REGULATED, {"CREDIT_CARD": 1})
                for p in (load_policy("finance"), load_policy("healthcare"))]
    stack_verdicts(verdicts).rule  # 'healthcare:classes.regulated'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelmix.guard._base import DataClass
from modelmix.guard._media import unread_media_verdict
from modelmix.guard._policy import Policy, Scope, Verdict

__all__ = ["STACK_SEPARATOR", "policy_verdict", "stack_verdicts"]

#: Joins the names of stacked policies in verdicts, errors and audit rows.
STACK_SEPARATOR = "+"


def policy_verdict(policy: Policy, detected: DataClass, counts: Mapping[str, int], *,
                   key_id: str | None = None, tags: tuple[str, ...] = (),
                   media: bool = False) -> Verdict:
    """What ``policy`` alone decides for a request the detector put in class
    ``detected``, holding entities of these types (``media``: it also carries images,
    audio or files the guard cannot read)."""
    data_class = policy.classify(detected, counts, key_id)
    verdict = policy.evaluate(data_class, counts, key_id=key_id, tags=tags)
    if media:
        verdict = unread_media_verdict(policy, verdict, counts, key_id, tags)
    return verdict


def stack_verdicts(verdicts: Sequence[Verdict]) -> Verdict:
    """One verdict at least as strict as each of ``verdicts`` (see the module docstring);
    a single verdict is returned as it is.

    Raises:
        ValueError: no verdict.
    """
    if not verdicts:
        raise ValueError("stack_verdicts needs at least one verdict")
    if len(verdicts) == 1:
        return verdicts[0]
    top = max(verdicts, key=lambda v: v.action.rank)  # the first of the strictest
    pseudo = [v for v in verdicts if v.pseudonymising]
    return Verdict(
        policy=STACK_SEPARATOR.join(v.policy for v in verdicts),
        data_class=max((v.data_class for v in verdicts), key=lambda c: c.rank),
        action=top.action,
        rule=_prefixed(top, top.rule),
        rules=tuple(_prefixed(v, rule) for v in verdicts for rule in v.rules),
        scopes=tuple((_prefixed(v, rule), scope) for v in verdicts for rule, scope in v.scopes),
        pseudonymising=bool(pseudo),
        pseudonymise=_types(pseudo),
        raw_scopes=_raw_scopes(pseudo),
        reason=top.reason,
    )


def _prefixed(verdict: Verdict, rule: str) -> str:
    return f"{verdict.policy}:{rule}"


def _types(pseudo: Sequence[Verdict]) -> frozenset[str] | None:
    """The entity types any of ``pseudo`` replaces (None: every type, or none
    pseudonymises)."""
    if not pseudo or any(v.pseudonymise is None for v in pseudo):
        return None
    return frozenset(t for v in pseudo for t in v.pseudonymise or ())


def _raw_scopes(pseudo: Sequence[Verdict]) -> tuple[Scope, ...]:
    """Limits a deployment must all meet to get raw values: every pseudonymising
    verdict's (empty, so nowhere, when one of them sends raw values nowhere)."""
    if any(not v.raw_scopes for v in pseudo):
        return ()
    return tuple(scope for v in pseudo for scope in v.raw_scopes)
