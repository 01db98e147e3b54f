"""Sensitive-data detection and classification: the guard in front of the router.

>>> from modelmix.guard import load_detector
>>> detector = load_detector()
>>> entities = detector.detect("I'm Jane Doe, card 4111-1111-1111-1111")
>>> [(e.type, e.start, e.end) for e in entities]
[('PERSON', 4, 12), ('CREDIT_CARD', 19, 38)]
>>> detector.classify(entities)
<DataClass.REGULATED: 'regulated'>
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from modelmix.guard._base import DataClass, Detector, Entity
from modelmix.guard._classify import DEFAULT_RULES, ClassificationRules, classify
from modelmix.guard._detect import ENTITY_TYPES, DetectorConfig, GuardDetector, load_detector
from modelmix.guard._normalize import Normalized, normalize
from modelmix.guard._patterns import RECOGNIZERS, Recognizer

if TYPE_CHECKING:
    from modelmix.guard._actions import Guard, guard_from_config, stack_policy
    from modelmix.guard._policy import (
        POLICY_ENV,
        READY_POLICIES,
        TAGS_HEADER,
        Action,
        Policy,
        RuleSpec,
        Scope,
        Verdict,
        request_tags,
    )
    from modelmix.guard._policy_files import (
        PolicyRef,
        load_policy,
        policy_from_dict,
        resolve_policy_ref,
    )
    from modelmix.guard._policy_patterns import PatternSpec
    from modelmix.guard._pseudonym import ChunkRestorer, Pseudonymizer, StreamRestorer
    from modelmix.guard._screening import GuardedProvider, Screening
    from modelmix.guard._stack import stack_verdicts
    from modelmix.guard._texts import request_texts

#: Policies, actions and pseudonymisation (docs/guard.md) load on first use.
_LAZY = {
    **dict.fromkeys(("Guard", "guard_from_config", "stack_policy"), "_actions"),
    **dict.fromkeys(("GuardedProvider", "Screening"), "_screening"),
    "request_texts": "_texts",
    **dict.fromkeys(("POLICY_ENV", "READY_POLICIES", "TAGS_HEADER", "Action", "Policy",
                     "RuleSpec", "Scope", "Verdict", "request_tags"), "_policy"),
    **dict.fromkeys(("PolicyRef", "load_policy", "policy_from_dict", "resolve_policy_ref"),
                    "_policy_files"),
    "PatternSpec": "_policy_patterns",
    "stack_verdicts": "_stack",
    **dict.fromkeys(("ChunkRestorer", "Pseudonymizer", "StreamRestorer"), "_pseudonym"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_RULES",
    "ENTITY_TYPES",
    "POLICY_ENV",
    "READY_POLICIES",
    "RECOGNIZERS",
    "TAGS_HEADER",
    "Action",
    "ChunkRestorer",
    "ClassificationRules",
    "DataClass",
    "Detector",
    "DetectorConfig",
    "Entity",
    "Guard",
    "GuardDetector",
    "GuardedProvider",
    "Normalized",
    "PatternSpec",
    "Policy",
    "PolicyRef",
    "Pseudonymizer",
    "Recognizer",
    "RuleSpec",
    "Scope",
    "Screening",
    "StreamRestorer",
    "Verdict",
    "classify",
    "guard_from_config",
    "load_detector",
    "load_policy",
    "normalize",
    "policy_from_dict",
    "request_tags",
    "request_texts",
    "resolve_policy_ref",
    "stack_policy",
    "stack_verdicts",
]
