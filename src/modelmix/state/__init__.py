"""Shared state of gateway replicas: budgets, rate limits, circuit breakers, key changes
and the response cache, in Redis when ``state.redis_url`` / ``$MODELMIX_REDIS_URL`` is set
(docs/deploy.md). Without Redis every limit stays per process, as for one replica.

This package sits beside ``providers`` and ``store``: routing, the engine and the
server use it; it imports only the catalog, the protocol and errors.
"""

from modelmix.state._breakers import BreakerUpdate, Probe, ProbeVerdict, SharedBreakers
from modelmix.state._deployments import DeploymentLimits, Ticket
from modelmix.state._redis import REDIS_URL_ENV, SharedRedis, redis_url, shared_redis

__all__ = [
    "REDIS_URL_ENV",
    "BreakerUpdate",
    "DeploymentLimits",
    "Probe",
    "ProbeVerdict",
    "SharedBreakers",
    "SharedRedis",
    "Ticket",
    "redis_url",
    "shared_redis",
]
