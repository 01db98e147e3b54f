"""The modelmix error hierarchy.

Every error modelmix raises derives from :class:`ModelmixError` and knows how to
render itself as an OpenAI error body (``{"error": {"message", "type", "param",
"code"}}``) with an HTTP status code, so the gateway translates errors in one place.

::

    ModelmixError
    ├── ConfigError              bad catalog / config file (raised at start)
    │   └── MissingExtra             an optional dependency is not installed
    ├── InvalidRequest (400)     malformed request: the caller's mistake
    │   ├── PayloadTooLarge (413)
    │   └── RequestTimeout (408)     body not received within server.body_timeout_s
    ├── ClientDisconnected (499) the caller left; recorded, never sent
    ├── AuthenticationFailed (401)
    ├── AuthUnavailable (503)    the key store cannot be read: refused, never admitted
    ├── PermissionDenied (403)   key not allowed to use this model
    ├── BudgetExceeded (429)     virtual key budget spent
    ├── KeyRateLimited (429)     virtual key RPM / TPM limit hit
    ├── StateUnavailable (503)   shared state (Redis) unreachable: limited keys refused
    ├── PolicyDenied (403)       policy forbids every candidate
    ├── NoDeployment (404)       unknown model, or none configured to serve it here
    │   └── NoDeploymentAvailable (503)  none can take calls now; ``retry_after`` (s)
    ├── StepFailed (502)         a step of a system of models failed (tool, template)
    │   └── StepTimeout (504)        a tool step ran past its timeout_s
    └── ProviderError (502)      an upstream call failed
        ├── RateLimited (429)        retryable; may carry ``retry_after`` (s)
        │   └── DeploymentRateLimited (429)  a deployment's own rpm / tpm: not called
        ├── ProviderTimeout (504)    retryable
        ├── UpstreamUnavailable (502) retryable: 5xx, connection reset
        ├── ContextTooLong (400)     not retryable on the same deployment
        ├── ProviderAuthError (401)  not retryable: bad upstream key
        └── ProviderBadRequest (400) not retryable
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import ValidationError

__all__ = [
    "AuthUnavailable",
    "AuthenticationFailed",
    "BudgetExceeded",
    "ClientDisconnected",
    "ConfigError",
    "ContextTooLong",
    "DeploymentRateLimited",
    "GatewayBusy",
    "InvalidMedia",
    "InvalidRequest",
    "KeyRateLimited",
    "MediaTooLarge",
    "MissingExtra",
    "ModelmixError",
    "NoDeployment",
    "NoDeploymentAvailable",
    "PayloadTooLarge",
    "PermissionDenied",
    "PolicyDenied",
    "ProviderAuthError",
    "ProviderBadRequest",
    "ProviderError",
    "ProviderTimeout",
    "RateLimited",
    "RequestTimeout",
    "StateUnavailable",
    "StepFailed",
    "StepTimeout",
    "UpstreamUnavailable",
    "has_module",
    "invalid_request",
    "require_extra",
]


class ModelmixError(Exception):
    """Root of all modelmix errors.

    Attributes:
        message: human-readable explanation, safe to show to the API caller.
        status_code: HTTP status the gateway answers with.
        error_type: OpenAI ``error.type`` string.
        code: OpenAI ``error.code`` string, or None.
        param: the request field at fault, or None.
    """

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code

    def to_openai(self) -> dict[str, Any]:
        """Return the OpenAI error body: ``{"error": {...}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    @property
    def retryable(self) -> bool:
        """Whether retrying (or falling back) may succeed."""
        return False


class ConfigError(ModelmixError):
    """The catalog or config file is invalid; names the file, deployment and field."""

    error_type = "config_error"


class MissingExtra(ConfigError):
    """A feature needs an optional dependency that is not installed; the message says
    which extra to install (``pip install 'modelmix[train]'``)."""


def require_extra(module: str, extra: str, what: str) -> None:
    """Raise :class:`MissingExtra` unless ``module`` can be imported.

    Args:
        module: the import name (``sklearn``, ``matplotlib``, ``google.genai``).
        extra: the modelmix extra that installs it (``train``, ``eval``, ``gemini``).
        what: the feature, for the message ("router training").
    """
    if not has_module(module):
        raise MissingExtra(f"{what} needs the '{extra}' extra: pip install 'modelmix[{extra}]'")


def has_module(module: str) -> bool:
    """Whether ``module`` is installed (without importing it, parents aside)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


class InvalidRequest(ModelmixError):
    """The request is malformed (bad JSON, missing or mistyped field...)."""

    status_code = 400
    error_type = "invalid_request_error"


def invalid_request(exc: ValidationError, *, prefix: Sequence[str] = ()) -> InvalidRequest:
    """The one translation of a pydantic ``ValidationError`` into a 400: the most specific
    (deepest) error's field path (``messages.0.content``, union-branch tags such as ``str`` or
    ``list[ContentPart]`` left out, under ``prefix``), its message, and how many more
    errors there were; ``param`` is the path, ``code`` ``invalid_value``."""
    # the most specific error: a union's other branches fail at its own level ("Input
    # should be a valid string" for a list of parts), the branch that applies deeper
    errors = exc.errors()
    first = max(errors, key=lambda e: len(e["loc"]))
    parts = [*prefix, *(str(p) for p in first["loc"]
                        if isinstance(p, int) or not (p in _TYPE_TAGS or "[" in p or "-" in p))]
    loc = ".".join(parts) or None
    more = f" (and {exc.error_count() - 1} more errors)" if exc.error_count() > 1 else ""
    return InvalidRequest(f"{loc or 'body'}: {first['msg']}{more}", param=loc,
                          code="invalid_value")


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "tuple"})


class PayloadTooLarge(InvalidRequest):
    """The request body exceeds the configured limit (bytes)."""

    status_code = 413
    default_code = "request_too_large"


class InvalidMedia(InvalidRequest):
    """A media part (image, PDF, audio) is corrupt, unsupported, mislabelled or cannot be
    fetched; ``param`` names the part (``messages.0.content.1``)."""

    default_code = "invalid_media"


class MediaTooLarge(PayloadTooLarge):
    """A media part exceeds ``media.max_part_bytes`` (or a fetched image
    ``media.fetch.max_bytes``); ``param`` names the part."""

    default_code = "media_too_large"


class GatewayBusy(ModelmixError):
    """The gateway holds as many request bodies as ``server.max_inflight_body_bytes``
    allows and this one waited ``server.body_timeout_s`` for room (503; retry later)."""

    status_code = 503
    error_type = "server_error"
    default_code = "server_busy"


class ClientDisconnected(ModelmixError):
    """The client went away before the answer was complete (recorded as status 499,
    the nginx convention for "client closed request")."""

    status_code = 499
    error_type = "client_closed_request"
    default_code = "client_disconnected"


class RequestTimeout(InvalidRequest):
    """The client did not send the whole request body in time (slow or stalled upload)."""

    status_code = 408
    default_code = "request_timeout"


class AuthenticationFailed(ModelmixError):
    """Missing or unknown API key."""

    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class AuthUnavailable(ModelmixError):
    """Authentication could not run (the key store is unreachable): the request is
    refused, never admitted (fail closed). ``retry_after`` is in seconds."""

    status_code = 503
    error_type = "service_unavailable_error"
    default_code = "auth_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class StateUnavailable(ModelmixError):
    """Shared state (Redis) could not be reached, so a limit that must hold across
    replicas (budget, RPM / TPM, deployment rate limits) cannot be checked: the request is
    refused, never admitted (``state.on_redis_down: closed``, the default; docs/deploy.md).
    ``retry_after`` is in seconds."""

    status_code = 503
    error_type = "service_unavailable_error"
    default_code = "state_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class PermissionDenied(ModelmixError):
    """The key may not use the requested model."""

    status_code = 403
    error_type = "permission_error"
    default_code = "model_not_allowed"


class BudgetExceeded(ModelmixError):
    """The virtual key's USD budget is spent (or would be by this request)."""

    status_code = 429
    error_type = "insufficient_quota"
    default_code = "budget_exceeded"


class KeyRateLimited(ModelmixError):
    """The virtual key's requests- or tokens-per-minute limit is reached."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PolicyDenied(ModelmixError):
    """Policy forbids every deployment that could serve the request."""

    status_code = 403
    error_type = "policy_error"
    default_code = "policy_denied"


class NoDeployment(ModelmixError):
    """No deployment can serve the request: an unknown model, or none configured to
    serve it here (404)."""

    status_code = 404
    error_type = "invalid_request_error"
    default_code = "model_not_found"

    def __init__(self, message: str, *, code: str | None = None,
                 param: str | None = "model"):
        super().__init__(message, param=param, code=code)


class NoDeploymentAvailable(NoDeployment):
    """Deployments exist but none can take calls now (their circuits are open): 503, with
    ``retry_after`` (seconds) when a circuit breaker says when one will."""

    status_code = 503
    error_type = "service_unavailable_error"
    default_code = "no_deployment_available"

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class StepFailed(ModelmixError):
    """A non-model step of a system of models failed: a tool raised, or a template or
    condition could not be evaluated on this request's values (docs/systems.md). The
    message names the system and the step; a failing *model* step raises its own error
    (ProviderError, PolicyDenied...) with the same prefix instead."""

    status_code = 502
    default_code = "system_step_failed"


class StepTimeout(StepFailed):
    """A tool step ran past its ``timeout_s``."""

    status_code = 504
    default_code = "system_step_timeout"


class ProviderError(ModelmixError):
    """An upstream provider call failed.

    Attributes:
        deployment: name of the deployment that failed, when known.
        upstream_status: HTTP status the upstream answered, when there was one.
    """

    status_code = 502
    error_type = "upstream_error"
    default_code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        deployment: str | None = None,
        upstream_status: int | None = None,
        code: str | None = None,
    ):
        super().__init__(message, code=code)
        self.deployment = deployment
        self.upstream_status = upstream_status
        #: The executor's attempt log when the error ends a routed call.
        self.attempts: list[Any] = []

    @property
    def fallbackable(self) -> bool:
        """Whether another deployment may succeed where this one failed."""
        return True


class RateLimited(ProviderError):
    """The upstream answered 429; ``retry_after`` is its Retry-After in seconds."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "upstream_rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return True


class DeploymentRateLimited(RateLimited):
    """A deployment's own ``rpm`` or ``tpm`` (catalog) is reached, across replicas when
    state is shared: the gateway did not call it. The executor moves to the next
    candidate without counting a circuit failure, as after an upstream 429; when every
    candidate is over, the request gets this 429 with ``retry_after`` (seconds until the
    window has room; None when the request alone is larger than the tpm limit)."""

    default_code = "deployment_rate_limited"


class ProviderTimeout(ProviderError):
    """The upstream did not answer within the per-request timeout."""

    status_code = 504
    error_type = "timeout_error"
    default_code = "upstream_timeout"

    @property
    def retryable(self) -> bool:
        return True


class UpstreamUnavailable(ProviderError):
    """The upstream failed transiently: 5xx, connection refused or reset, broken stream.
    ``retry_after`` is the upstream's Retry-After in seconds, when it sent one (a 503
    during maintenance); the gateway passes it on with its 502."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return True


class ContextTooLong(ProviderError):
    """The prompt plus ``max_tokens`` exceeds the deployment's context window."""

    status_code = 400
    error_type = "invalid_request_error"
    default_code = "context_length_exceeded"


class ProviderAuthError(ProviderError):
    """The upstream rejected modelmix's credentials (a configuration problem)."""

    status_code = 502
    default_code = "upstream_auth_error"


class ProviderBadRequest(ProviderError):
    """The upstream rejected the request as invalid."""

    status_code = 400
    error_type = "invalid_request_error"
    default_code = "upstream_bad_request"

    @property
    def fallbackable(self) -> bool:
        return False
