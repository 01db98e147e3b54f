"""Routing: policy filter, strategies and the router that combines them."""

from modelmix.routing._balance import (
    EWMA_ALPHA,
    STALE_AFTER_S,
    BalanceStrategy,
    CostStrategy,
    DeploymentLoad,
    LatencyStrategy,
    LeastBusyStrategy,
    LoadStats,
    WeightedStrategy,
)
from modelmix.routing._calibration import (
    CALIBRATION_FILE,
    Calibration,
    CalibrationResult,
    Target,
    calibrate,
    load_calibration,
    router_fingerprint,
    save_calibration,
)
from modelmix.routing._decision import RouteDecision
from modelmix.routing._exclusion import Exclusion, ExclusionKind
from modelmix.routing._input import RoutingHints, RoutingInput, parse_hints, prompt_text
from modelmix.routing._learned_strategy import LearnedStrategy, estimated_cost_usd
from modelmix.routing._policy import PolicyContext, Rule, capability_rules, filter_candidates
from modelmix.routing._router import HealthCheck, Router
from modelmix.routing._strategies import (
    STRATEGIES,
    CheapestStrategy,
    OrderedStrategy,
    RandomStrategy,
    RulesStrategy,
    Strategy,
)

__all__ = [
    "CALIBRATION_FILE",
    "EWMA_ALPHA",
    "STALE_AFTER_S",
    "STRATEGIES",
    "BalanceStrategy",
    "Calibration",
    "CalibrationResult",
    "CheapestStrategy",
    "CostStrategy",
    "DeploymentLoad",
    "Exclusion",
    "ExclusionKind",
    "HealthCheck",
    "LatencyStrategy",
    "LearnedStrategy",
    "LeastBusyStrategy",
    "LoadStats",
    "OrderedStrategy",
    "PolicyContext",
    "RandomStrategy",
    "RouteDecision",
    "Router",
    "RoutingHints",
    "RoutingInput",
    "Rule",
    "RulesStrategy",
    "Strategy",
    "Target",
    "WeightedStrategy",
    "calibrate",
    "capability_rules",
    "estimated_cost_usd",
    "filter_candidates",
    "load_calibration",
    "parse_hints",
    "prompt_text",
    "router_fingerprint",
    "save_calibration",
]
