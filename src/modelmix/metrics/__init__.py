"""Router quality metrics shared by evaluation and training: RouteLLM's PGR, APGR and
CPT, quality curves, fold splitting by prompt and summary statistics over folds.

A leaf package (numpy only): ``modelmix.eval`` (evaluation protocols, reports, plots) and
``modelmix.routing.learned`` (``router train --cv``) both import it, so they measure the
same way and neither imports the other.

Example::

    from modelmix.metrics import evaluate_scores
    m = evaluate_scores(scores, weak_outcomes, strong_outcomes)
    m.apgr, m.cpt[0.5]          # in [0, 1]
"""

from modelmix.metrics._folds import (
    FoldMethod,
    cross_validate_sources,
    source_folds,
    stratified_folds,
)
from modelmix.metrics._quality import (
    DEFAULT_BINS,
    PGR_TARGETS,
    CurvePoint,
    RouterMetrics,
    apgr,
    area_under_curve,
    cpt,
    decile_thresholds,
    evaluate_scores,
    interpolate_curve,
    pgr,
    quality_curve,
    summarize_curve,
)
from modelmix.metrics._stats import Stat, finite_or_none

__all__ = [
    "DEFAULT_BINS",
    "PGR_TARGETS",
    "CurvePoint",
    "FoldMethod",
    "RouterMetrics",
    "Stat",
    "apgr",
    "area_under_curve",
    "cpt",
    "cross_validate_sources",
    "decile_thresholds",
    "evaluate_scores",
    "finite_or_none",
    "interpolate_curve",
    "pgr",
    "quality_curve",
    "source_folds",
    "stratified_folds",
    "summarize_curve",
]
