"""Provider adapters: one per wire protocol, all behind :class:`Provider`."""

from modelmix.providers._availability import availability
from modelmix.providers.base import (
    PROVIDER_CLASSES,
    EmbeddingResult,
    Provider,
    create_provider,
    error_from_status,
    parse_retry_after,
)

__all__ = [
    "PROVIDER_CLASSES",
    "EmbeddingResult",
    "Provider",
    "availability",
    "create_provider",
    "error_from_status",
    "parse_retry_after",
]
