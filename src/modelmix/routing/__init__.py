"""Routing: policy filter, strategies and the router that combines them."""

from modelmix.routing._decision import RouteDecision
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
    "STRATEGIES",
    "CheapestStrategy",
    "HealthCheck",
    "OrderedStrategy",
    "PolicyContext",
    "RandomStrategy",
    "RouteDecision",
    "Router",
    "Rule",
    "RulesStrategy",
    "Strategy",
    "capability_rules",
    "filter_candidates",
]
