"""What a routing operating point costs, from catalog prices.

The tables' own models (Mixtral-8x7B, GPT-4-1106-preview) need not be in the catalog, so
cost is priced with two catalog deployments standing in for them (the CLI's
``--weak-deployment`` / ``--strong-deployment``).

Token assumption (stated in every report): a request's prompt tokens are the table's mean
estimated prompt tokens, and each model's completion tokens are its mean estimated
response tokens when the table has ``<model>_response`` columns (GSM8K), else a fixed
``completion_tokens`` (default 1: RouteLLM's MMLU answers were generated with
``max_new_tokens=1``, ``routellm/evals/mmlu/generate_responses.py``). Estimates are
characters / 4 (:data:`~modelmix.eval._table.CHARS_PER_TOKEN`). With a mean profile the
cost per request is linear in the strong fraction ``f``:
``cost(f) = (1 - f) * cost_weak + f * cost_strong``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from modelmix.catalog import Deployment
from modelmix.eval._table import PairTable

__all__ = ["DEFAULT_COMPLETION_TOKENS", "CostModel", "cost_model"]

#: Completion tokens assumed per request when the table has no responses.
DEFAULT_COMPLETION_TOKENS = 1


def _request_usd(deployment: Deployment, prompt_tokens: float,
                 completion_tokens: float) -> float:
    """USD of one request; the formula of :meth:`Deployment.cost_usd` (prices are USD per
    1M tokens) on mean, hence fractional, token counts."""
    return (prompt_tokens * deployment.input_cost_per_mtok
            + completion_tokens * deployment.output_cost_per_mtok) / 1_000_000


@dataclass(frozen=True, slots=True)
class CostModel:
    """Mean USD per request of the weak and the strong deployment on one table.

    Attributes:
        weak_deployment / strong_deployment: catalog names of the priced deployments.
        prompt_tokens: mean estimated prompt tokens per request.
        weak_completion_tokens / strong_completion_tokens: mean completion tokens.
        completion_measured: True when completion tokens come from the table's responses.
        weak_usd / strong_usd: USD per request on each deployment.
    """

    weak_deployment: str
    strong_deployment: str
    prompt_tokens: float
    weak_completion_tokens: float
    strong_completion_tokens: float
    completion_measured: bool
    weak_usd: float
    strong_usd: float

    def usd_per_request(self, strong_fraction: float) -> float:
        """``(1 - f) * weak_usd + f * strong_usd`` for strong fraction ``f`` in [0, 1]."""
        return (1.0 - strong_fraction) * self.weak_usd + strong_fraction * self.strong_usd

    def relative_to_strong(self, strong_fraction: float) -> float:
        """Cost at ``f`` as a share of always-strong (NaN when the strong model is free)."""
        if self.strong_usd == 0:
            return float("nan")
        return self.usd_per_request(strong_fraction) / self.strong_usd

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: tuple[int, ...]) -> float:
    return sum(values) / len(values)


def cost_model(table: PairTable, weak: Deployment, strong: Deployment, *,
               completion_tokens: int = DEFAULT_COMPLETION_TOKENS) -> CostModel:
    """Price ``table``'s mean token profile with the two deployments' catalog prices.

    Example::

        cfg = default_config()
        cm = cost_model(table, cfg.deployment("nim-llama-3.3-70b"), cfg.deployment("gpt-4.1"))
        cm.usd_per_request(0.5) * 1000  # USD per 1k requests at 50% strong calls
    """
    prompt = _mean(tuple(table.prompt_tokens()))
    measured = (table.weak_completion_tokens is not None
                and table.strong_completion_tokens is not None)
    if table.weak_completion_tokens is not None and table.strong_completion_tokens is not None:
        weak_out = _mean(table.weak_completion_tokens)
        strong_out = _mean(table.strong_completion_tokens)
    else:
        weak_out = strong_out = float(completion_tokens)
    return CostModel(
        weak_deployment=weak.name, strong_deployment=strong.name, prompt_tokens=prompt,
        weak_completion_tokens=weak_out, strong_completion_tokens=strong_out,
        completion_measured=measured,
        weak_usd=_request_usd(weak, prompt, weak_out),
        strong_usd=_request_usd(strong, prompt, strong_out),
    )
