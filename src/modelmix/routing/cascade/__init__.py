"""Verified cascades, the offline half: verifiers that need no live model.

A verified cascade calls the cheapest capable model first, checks its answer, and
escalates to the next tier only when the check fails. A verifier reads the prompt and the
answer and returns a :class:`Check` (``ok``, an escalation ``score`` in [0, 1], a
``reason``); it is pure and never raises for a bad answer. The live runtime
(``modelmix.systems``) builds them by name; ``modelmix cascade train|score|eval`` trains,
scores and evaluates them offline (docs/cascade.md).

Example::

    from modelmix.routing.cascade import verifier_from_spec

    v = verifier_from_spec("arithmetic", {})
    v.check("James runs 3 sprints of 60 m, 3 times a week. Meters a week?",
            "3 x 60 = 180\\n180 x 3 = 540\\n#### 540")
    # Check(ok=True, score=0.0, reason='final answer 540 matches the recomputed steps ...')

    learned = verifier_from_spec("learned", {"artifact": "default", "threshold": 0.5})
    json_v = verifier_from_spec("json-schema", {"schema": {"type": "object"}})

Verifiers: ``arithmetic`` (recomputes worked steps, exact fractions, no ``eval``),
``json-schema`` (extract JSON, validate with ``jsonschema``; :func:`repair_prompt`) and
``learned`` (P(acceptable | prompt, answer), numpy scoring; trained with
:func:`train_verifier`, which needs scikit-learn).
"""

from __future__ import annotations

from modelmix.routing.cascade._arithmetic import (
    Analysis,
    ArithmeticVerifier,
    analyse,
    prompt_numbers,
)
from modelmix.routing.cascade._base import Check, Verifier
from modelmix.routing.cascade._expr import ExprError, evaluate_text
from modelmix.routing.cascade._features import ANSWER_FEATURES, feature_names, verifier_features
from modelmix.routing.cascade._json import JsonSchemaVerifier, extract_json, repair_prompt
from modelmix.routing.cascade._learned import (
    VERIFIER_FORMAT,
    VERIFIER_FORMAT_VERSION,
    LearnedVerifier,
    VerifierModel,
    default_verifier_dir,
    load_verifier,
)
from modelmix.routing.cascade._registry import VERIFIERS, verifier_from_spec
from modelmix.routing.cascade._text import find_final, find_steps
from modelmix.routing.cascade._train import (
    RESPONSE_SUFFIX,
    ResponseTable,
    VerifierFitOptions,
    cross_validate_verifier,
    fit_verifier,
    read_answers,
    read_response_table,
    roc_auc,
    train_verifier,
)

__all__ = [
    "ANSWER_FEATURES",
    "RESPONSE_SUFFIX",
    "VERIFIERS",
    "VERIFIER_FORMAT",
    "VERIFIER_FORMAT_VERSION",
    "Analysis",
    "ArithmeticVerifier",
    "Check",
    "ExprError",
    "JsonSchemaVerifier",
    "LearnedVerifier",
    "ResponseTable",
    "Verifier",
    "VerifierFitOptions",
    "VerifierModel",
    "analyse",
    "cross_validate_verifier",
    "default_verifier_dir",
    "evaluate_text",
    "extract_json",
    "feature_names",
    "find_final",
    "find_steps",
    "fit_verifier",
    "load_verifier",
    "prompt_numbers",
    "read_answers",
    "read_response_table",
    "repair_prompt",
    "roc_auc",
    "train_verifier",
    "verifier_features",
    "verifier_from_spec",
]
