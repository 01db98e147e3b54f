"""Shared state of gateway replicas: budgets, rate limits, circuit breakers, key changes
and the response cache, in Redis when ``state.redis_url`` / ``$MODELMIX_REDIS_URL`` is set
(docs/deploy.md). Without Redis every limit stays per process, as for one replica.

This package sits beside ``providers`` and ``store``: routing, the engine and the
server use it; it imports only the catalog, the protocol and errors.
"""

from modelmix.state._breakers import BreakerUpdate, Probe, ProbeVerdict, SharedBreakers
from modelmix.state._deployments import DeploymentLimits, Ticket
from modelmix.state._keys import (
    KEY_CHANGES,
    Admitted,
    KeyChange,
    KeyFigures,
    Refused,
    Settled,
    SharedKeyState,
    SharedReservation,
    key_change_message,
    new_token,
    parse_key_change,
    publish_key_change,
)
from modelmix.state._redis import REDIS_URL_ENV, SharedRedis, redis_url, shared_redis

__all__ = [
    "KEY_CHANGES",
    "REDIS_URL_ENV",
    "Admitted",
    "BreakerUpdate",
    "DeploymentLimits",
    "KeyChange",
    "KeyFigures",
    "Probe",
    "ProbeVerdict",
    "Refused",
    "Settled",
    "SharedBreakers",
    "SharedKeyState",
    "SharedRedis",
    "SharedReservation",
    "Ticket",
    "key_change_message",
    "new_token",
    "parse_key_change",
    "publish_key_change",
    "redis_url",
    "shared_redis",
]
