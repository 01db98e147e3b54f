"""modelmix: one OpenAI-compatible gateway and library over open and proprietary models.

Example::

    from modelmix import Client
    with Client() as client:
        print(client.chat(model="auto", messages=[{"role": "user", "content": "Hi"}]).text)
"""

from modelmix._version import __version__
from modelmix.catalog import Config, Deployment, Hosting, Modality, Tier, load_config
from modelmix.client import (
    AsyncChatStream,
    AsyncClient,
    ChatResult,
    ChatStream,
    Client,
    EmbeddingsResult,
    Route,
)
from modelmix.engine import CallContext, ChatService
from modelmix.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    ConfigError,
    ContextTooLong,
    DeploymentRateLimited,
    InvalidRequest,
    KeyRateLimited,
    ModelmixError,
    NoDeployment,
    PayloadTooLarge,
    PermissionDenied,
    PolicyDenied,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    StateUnavailable,
    UpstreamUnavailable,
)
from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse, Usage
from modelmix.routing import RouteDecision

__all__ = [
    "AsyncChatStream",
    "AsyncClient",
    "AuthenticationFailed",
    "BudgetExceeded",
    "CallContext",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ChatResult",
    "ChatService",
    "ChatStream",
    "Client",
    "Config",
    "ConfigError",
    "ContextTooLong",
    "Deployment",
    "DeploymentRateLimited",
    "EmbeddingsResult",
    "Hosting",
    "InvalidRequest",
    "KeyRateLimited",
    "Modality",
    "ModelmixError",
    "NoDeployment",
    "PayloadTooLarge",
    "PermissionDenied",
    "PolicyDenied",
    "ProviderAuthError",
    "ProviderBadRequest",
    "ProviderError",
    "ProviderTimeout",
    "RateLimited",
    "Route",
    "RouteDecision",
    "StateUnavailable",
    "Tier",
    "UpstreamUnavailable",
    "Usage",
    "__version__",
    "load_config",
]
