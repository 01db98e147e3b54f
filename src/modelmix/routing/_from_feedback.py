"""Training data from the gateway's own traffic: stored prompts, feedback, a judge.

``modelmix router train --from-feedback`` builds an outcome table from what the store
holds (``store.keep_prompts`` must have been on while the traffic came in):

* one row per distinct prompt, one column per model profile: a deployment's
  ``quality_profile`` when it has one, else its name;
* a cell is the mean score in [0, 1] of the requests that prompt sent to that
  deployment: the callers' feedback (``POST /v1/feedback``) when there is any, else
  the judge's grade; empty (NaN) where the deployment never answered the prompt.

The judge (``learned_router.judge``, a catalog deployment) grades stored (prompt,
answer) pairs that no caller rated, so it needs ``store.keep_responses`` too. It is
called through modelmix itself with :data:`JUDGE_PROMPT` and answers an integer 1-10,
mapped to ``(n - 1) / 9``; grades are stored as feedback with ``source="judge"`` so a
pair is judged once.

Example::

    table = build_feedback_table(store.outcomes(), config)
    table.write_jsonl(Path("feedback.jsonl"))   # the learned-router trainer reads it
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelmix.catalog import Config
from modelmix.store._feedback import StoredOutcome

__all__ = [
    "JUDGE_PROMPT",
    "FeedbackTable",
    "Judge",
    "build_feedback_table",
    "parse_grade",
    "profile_column",
]

#: What the judge is asked; ``{prompt}`` and ``{answer}`` are filled in.
JUDGE_PROMPT = """You grade answers given by an AI assistant.

[Question]
{prompt}

[Answer]
{answer}

How good is the answer: correct, complete and helpful? Reply with one integer from 1
(useless or wrong) to 10 (perfect), and nothing else."""

#: Chat function the judge uses: messages in, answer text out (e.g. modelmix's client).
ChatFn = Callable[[list[dict[str, str]]], Awaitable[str]]

_GRADE = re.compile(r"\b(10|[1-9])\b")


def parse_grade(text: str) -> float | None:
    """The first integer 1-10 in a judge's answer as a score in [0, 1]; None if none."""
    match = _GRADE.search(text)
    return None if match is None else (int(match.group(1)) - 1) / 9


def profile_column(deployment: str, config: Config) -> str:
    """The outcome column a deployment's results train: its ``quality_profile``, else its
    name (also for deployments no longer in the catalog)."""
    try:
        dep = config.deployment(deployment)
    except KeyError:
        return deployment
    return dep.quality_profile or dep.name


@dataclass(frozen=True, slots=True)
class FeedbackTable:
    """A sparse outcome table: ``scores[i][j]`` is prompt i's score on column j, or None.

    Attributes:
        prompts / columns / scores: the table.
        user_cells / judge_cells: how many (request) scores came from callers / the judge.
    """

    prompts: tuple[str, ...]
    columns: tuple[str, ...]
    scores: tuple[tuple[float | None, ...], ...]
    user_cells: int = 0
    judge_cells: int = 0

    def __len__(self) -> int:
        return len(self.prompts)

    def write_jsonl(self, path: Path) -> Path:
        """One JSON object per prompt: ``prompt`` plus every column (null: no outcome)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            for prompt, row in zip(self.prompts, self.scores, strict=True):
                fh.write(json.dumps({"prompt": prompt, **dict(zip(self.columns, row,
                                                                  strict=True))}) + "\n")
        return path


def build_feedback_table(outcomes: Sequence[StoredOutcome], config: Config, *,
                         use_judge: bool = True) -> FeedbackTable:
    """Group ``outcomes`` by prompt and column (see the module docstring); requests with
    neither feedback nor (when ``use_judge``) a judge grade are left out."""
    cells: dict[str, dict[str, list[float]]] = {}
    counts = {"user": 0, "judge": 0}
    for out in outcomes:
        if out.user_score is not None:
            score, source = out.user_score, "user"
        elif use_judge and out.judge_score is not None:
            score, source = out.judge_score, "judge"
        else:
            continue
        counts[source] += 1
        column = profile_column(out.deployment, config)
        cells.setdefault(out.prompt, {}).setdefault(column, []).append(score)
    columns = tuple(sorted({c for row in cells.values() for c in row}))
    scores = tuple(
        tuple(sum(row[c]) / len(row[c]) if c in row else None for c in columns)
        for row in cells.values())
    return FeedbackTable(prompts=tuple(cells), columns=columns, scores=scores,
                         user_cells=counts["user"], judge_cells=counts["judge"])


class Judge:
    """Grades stored (prompt, answer) pairs with a chat model.

    Args:
        chat: sends messages to the judge deployment and returns its answer's text.
        concurrency: judge calls in flight at once.
    """

    def __init__(self, chat: ChatFn, *, concurrency: int = 4):
        self._chat = chat
        self._limit = asyncio.Semaphore(concurrency)

    async def grade(self, prompt: str, answer: str) -> float | None:
        """The judge's score in [0, 1], or None when its answer holds no grade."""
        text = JUDGE_PROMPT.format(prompt=prompt, answer=answer)
        async with self._limit:
            reply = await self._chat([{"role": "user", "content": text}])
        return parse_grade(reply)

    async def grade_all(self, outcomes: Sequence[StoredOutcome]) -> dict[str, float]:
        """Grades by request id for the outcomes that have an answer and no grade yet
        (neither a caller's nor the judge's). Failed or unparsable calls are skipped."""
        todo = [o for o in outcomes if o.response and o.user_score is None
                and o.judge_score is None]
        results = await asyncio.gather(*(self.grade(o.prompt, o.response or "") for o in todo),
                                       return_exceptions=True)
        return {o.request_id: r for o, r in zip(todo, results, strict=True)
                if isinstance(r, float)}
