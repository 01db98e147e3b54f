"""Systems of models: declarative DAGs of steps called like a model.

A system (``model: "system/<name>"``) is a named DAG of steps -- ``model``, ``cascade``,
``guard``, ``classify``, ``verify``, ``tool``, ``transform``, ``read`` -- declared in the
catalog's ``systems:`` section or in files it includes (docs/systems.md). The engine runs it
with :class:`SystemRunner`, making every model call through its own service path, so
the data policy, budgets, fallbacks and usage records apply inside a system exactly as
outside.

Example::

    systems:
      checked-answer:
        steps:
          draft: {kind: model, model: open}
          check: {kind: verify, answer: draft, verifier: arithmetic}
          final: {kind: model, model: proprietary, when: "not check.ok"}
        output: [final, draft]
"""

from __future__ import annotations

from modelmix.systems import _check_steps, _flow_steps, _model_steps, _read_step  # kinds
from modelmix.systems._base import STEP_KINDS, Step, StepOptions, StepRun
from modelmix.systems._contracts import (
    MediaText,
    ModelAnswer,
    ModelCaller,
    ModelStream,
    StepCall,
    StepTrace,
    SystemResult,
)
from modelmix.systems._load import BUILTIN, blueprint_dir, load_systems
from modelmix.systems._runner import SystemRunner
from modelmix.systems._system import System, build_system
from modelmix.systems._verifiers import LIVE_VERIFIERS, AnswerVerifier

#: The prefix of a system's model name.
SYSTEM_PREFIX = "system/"

_KINDS = (_check_steps, _flow_steps, _model_steps, _read_step)

__all__ = [
    "BUILTIN",
    "LIVE_VERIFIERS",
    "STEP_KINDS",
    "SYSTEM_PREFIX",
    "AnswerVerifier",
    "MediaText",
    "ModelAnswer",
    "ModelCaller",
    "ModelStream",
    "Step",
    "StepCall",
    "StepOptions",
    "StepRun",
    "StepTrace",
    "System",
    "SystemResult",
    "SystemRunner",
    "blueprint_dir",
    "build_system",
    "load_systems",
]
