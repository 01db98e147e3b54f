"""Router evaluation: RouteLLM's metrics (quality curve, PGR, APGR, CPT), random and oracle
baselines, cost from catalog prices, k-fold cross-validation by prompt, table and plot.

Example::

    from modelmix.eval import cross_validate, load_outcome_table, write_results

    table = load_outcome_table("shared/data/routellm/mmlu.csv")
    report = cross_validate(table, fit=my_trainer, folds=5)   # fit([train]) -> scorer
    write_results([report], "out/")                           # results.json + plot.png
"""

from modelmix.eval._baselines import RANDOM_SEEDS, oracle_curve, oracle_metrics, random_metrics
from modelmix.eval._cost import DEFAULT_COMPLETION_TOKENS, CostModel, cost_model
from modelmix.eval._frontier import Point
from modelmix.eval._frontier_eval import FrontierReport, frontier_report
from modelmix.eval._output import PLOT_FILE, RESULTS_FILE, render_table, write_results
from modelmix.eval._plot import plot_reports
from modelmix.eval._prices import ModelPrice, PriceTable, load_prices
from modelmix.eval._protocols import (
    Fit,
    Scorer,
    cross_validate,
    cross_validate_tables,
    evaluate_holdout,
    stratified_folds,
)
from modelmix.eval._report import CURVE_GRID, METHODS, EvalReport, MethodSummary
from modelmix.eval._run import EvalOptions, run_eval
from modelmix.eval._table import (
    CHARS_PER_TOKEN,
    PairTable,
    estimate_tokens,
    load_outcome_table,
    model_columns,
)
from modelmix.metrics import (
    DEFAULT_BINS,
    PGR_TARGETS,
    CurvePoint,
    RouterMetrics,
    Stat,
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

__all__ = [
    "CHARS_PER_TOKEN",
    "CURVE_GRID",
    "DEFAULT_BINS",
    "DEFAULT_COMPLETION_TOKENS",
    "METHODS",
    "PGR_TARGETS",
    "PLOT_FILE",
    "RANDOM_SEEDS",
    "RESULTS_FILE",
    "CostModel",
    "CurvePoint",
    "EvalOptions",
    "EvalReport",
    "Fit",
    "FrontierReport",
    "MethodSummary",
    "ModelPrice",
    "PairTable",
    "Point",
    "PriceTable",
    "RouterMetrics",
    "Scorer",
    "Stat",
    "apgr",
    "area_under_curve",
    "cost_model",
    "cpt",
    "cross_validate",
    "cross_validate_tables",
    "decile_thresholds",
    "estimate_tokens",
    "evaluate_holdout",
    "evaluate_scores",
    "frontier_report",
    "interpolate_curve",
    "load_outcome_table",
    "load_prices",
    "model_columns",
    "oracle_curve",
    "oracle_metrics",
    "pgr",
    "plot_reports",
    "quality_curve",
    "random_metrics",
    "render_table",
    "run_eval",
    "stratified_folds",
    "summarize_curve",
    "write_results",
]
