"""Typed catalog entries: deployments, groups and the settings around them."""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelmix.catalog._known import fill_known

__all__ = [
    "BALANCE_STRATEGIES",
    "BUILTIN_GROUPS",
    "OPENAI_COMPATIBLE_PROVIDERS",
    "PROVIDERS",
    "CacheSettings",
    "CircuitBreakerSettings",
    "Deployment",
    "Hosting",
    "LearnedRouterSettings",
    "MediaFetchSettings",
    "MediaSettings",
    "Modality",
    "ReliabilitySettings",
    "ServerSettings",
    "StateSettings",
    "StoreSettings",
    "Tier",
]


class Tier(StrEnum):
    """Whether a model's weights are open (self-hostable) or proprietary."""

    OPEN = "open"
    PROPRIETARY = "proprietary"


class Hosting(StrEnum):
    """Where a deployment runs: in-process, on infrastructure you run, or a vendor cloud."""

    LOCAL = "local"
    SELF_HOSTED = "self-hosted"
    CLOUD = "cloud"


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    #: Documents sent as ``file`` parts (PDF), as OpenAI's and Gemini's APIs take them.
    FILE = "file"


#: Providers that speak the OpenAI Chat Completions wire protocol, with their default base URL.
OPENAI_COMPATIBLE_PROVIDERS: dict[str, str | None] = {
    "openai": "https://api.openai.com/v1",
    "openai-compatible": None,
    "vllm": None,
    "nim": "https://integrate.api.nvidia.com/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "llamacpp": "http://127.0.0.1:8080/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "together": "https://api.together.xyz/v1",
}

#: Every provider name a deployment may use.
PROVIDERS: frozenset[str] = frozenset(
    {*OPENAI_COMPATIBLE_PROVIDERS, "anthropic", "gemini", "local"}
)

#: Group names modelmix gives a meaning to even when the config does not define them; no
#: deployment may take one of these names.
BUILTIN_GROUPS = ("auto", "open", "proprietary")

_PROPRIETARY_PROVIDERS = {"openai", "anthropic", "gemini"}
#: Providers whose adapter cannot serve ``mode: embedding``, and what to do instead.
_NO_EMBEDDINGS = {
    "anthropic": "mode embedding: Anthropic has no embeddings API",
    "gemini": ("mode embedding: the gemini adapter has no embeddings; use Gemini's "
               "OpenAI-compatible endpoint (provider: openai-compatible, base_url: "
               "https://generativelanguage.googleapis.com/v1beta/openai, api_key_env: "
               "GEMINI_API_KEY)"),
}
_CLOUD_PROVIDERS = {"openai", "anthropic", "gemini", "nim", "openrouter", "together"}


def _http_host(url: str) -> str | None:
    """The host of an ``http``/``https`` URL; None for anything else or a bad port."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        return None
    return parts.hostname if parts.scheme in ("http", "https") else None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Deployment(_Strict):
    """One model served by one provider at one place.

    Prices are USD per 1M tokens; ``context_window`` is in tokens; ``timeout_s`` in
    seconds. ``tier`` and ``hosting`` default from the provider (``openai``,
    ``anthropic``, ``gemini`` -> proprietary / cloud; ``local`` -> open / local;
    other OpenAI-compatible servers -> open / self-hosted, or cloud for hosted APIs).
    A proprietary ``tier`` (written, or from the known-models table) makes the default
    ``hosting`` cloud on any provider but ``local``: such a server relays to the vendor.

    Example::

        Deployment(name="vllm-llama", provider="vllm",
                   base_url="http://10.0.0.5:8000/v1", model="meta-llama/Llama-3.1-8B-Instruct")
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    provider: str
    model: str = Field(min_length=1)
    #: What the deployment serves: ``chat`` (chat completions, responses, messages,
    #: completions) or ``embedding`` (``POST /v1/embeddings`` only; docs/endpoints.md).
    mode: Literal["chat", "embedding"] = "chat"
    base_url: str | None = None
    api_key_env: str | None = None
    tier: Tier = None  # type: ignore[assignment]  # filled by _defaults
    hosting: Hosting = None  # type: ignore[assignment]
    region: str | None = None
    input_modalities: tuple[Modality, ...] = (Modality.TEXT,)
    output_modalities: tuple[Modality, ...] = (Modality.TEXT,)
    context_window: int = Field(default=8192, gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    supports_tools: bool = False
    supports_json_mode: bool = False
    #: Whether the deployment returns token ``logprobs`` (None: by provider, true for
    #: OpenAI-compatible servers, false for anthropic, gemini and local; set false for a
    #: compatible server that ignores them, so such requests go elsewhere or get a 400).
    supports_logprobs: bool | None = None
    input_cost_per_mtok: float = Field(default=0.0, ge=0)
    output_cost_per_mtok: float = Field(default=0.0, ge=0)
    max_concurrency: int | None = Field(default=None, gt=0)
    #: Requests per minute this deployment may take (all replicas together when shared
    #: state is on); over it, the deployment is skipped like one answering 429.
    rpm: int | None = Field(default=None, gt=0)
    #: Tokens (prompt + completion) per minute this deployment may take, as ``rpm``.
    tpm: int | None = Field(default=None, gt=0)
    #: Share of traffic under a group's ``weighted`` strategy (relative to the other
    #: members' weights).
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    timeout_s: float | None = Field(default=None, gt=0)
    model_path: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    #: The learned router's model column this deployment answers like (e.g.
    #: ``gpt-4-1106-preview``); by default open deployments map to the predictor's weak
    #: model and proprietary ones to its strong model.
    quality_profile: str | None = Field(default=None, min_length=1)
    #: The fields filled from the known-models table because the config left them out
    #: (catalog/_known.py; docs/configuration.md, "Known models"); set by modelmix.
    known_fields: tuple[str, ...] = Field(default=(), exclude=True, repr=False)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in BUILTIN_GROUPS:
            raise ValueError(f"{value!r} is reserved for the built-in group of that name; "
                             f"deployments may not be called {', '.join(BUILTIN_GROUPS)}")
        return value

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in PROVIDERS:
            raise ValueError(f"unknown provider {value!r}; expected one of {sorted(PROVIDERS)}")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not _http_host(value):
            raise ValueError(f"{value!r} is not an http(s) URL with a host, "
                             "e.g. http://127.0.0.1:8000/v1")
        return value

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = fill_known(data)  # a copy when it fills anything
        data = dict(data)
        provider = data.get("provider")
        if data.get("tier") is None:
            data["tier"] = "proprietary" if provider in _PROPRIETARY_PROVIDERS else "open"
        if data.get("hosting") is None:
            if provider == "local":
                data["hosting"] = "local"
            elif provider in _CLOUD_PROVIDERS or data["tier"] == "proprietary":
                # proprietary weights are not self-hostable: a server for one (a LiteLLM
                # proxy, a relay) forwards to the vendor's cloud; the data guard trusts
                # self-hosted, so it is never guessed for one
                data["hosting"] = "cloud"
            else:
                data["hosting"] = "self-hosted"
        if data.get("base_url") is None and provider in OPENAI_COMPATIBLE_PROVIDERS:
            data["base_url"] = OPENAI_COMPATIBLE_PROVIDERS[provider]
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Deployment:
        if self.provider in OPENAI_COMPATIBLE_PROVIDERS and not self.base_url:
            raise ValueError(f"provider {self.provider!r} needs a base_url")
        if self.max_output_tokens is not None and self.max_output_tokens > self.context_window:
            raise ValueError(f"max_output_tokens ({self.max_output_tokens}) is larger than "
                             f"context_window ({self.context_window})")
        if self.mode == "embedding" and self.provider in _NO_EMBEDDINGS:
            raise ValueError(_NO_EMBEDDINGS[self.provider])
        return self

    @property
    def openai_compatible(self) -> bool:
        return self.provider in OPENAI_COMPATIBLE_PROVIDERS

    @property
    def returns_logprobs(self) -> bool:
        """Whether a request asking for ``logprobs`` may be sent here (docs/endpoints.md)."""
        if self.supports_logprobs is not None:
            return self.supports_logprobs
        return self.openai_compatible

    def api_key(self) -> str | None:
        """The API key read from ``api_key_env`` now, or None when unset."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Cost of one call in USD from catalog prices (USD per 1M tokens)."""
        return (
            prompt_tokens * self.input_cost_per_mtok
            + completion_tokens * self.output_cost_per_mtok
        ) / 1_000_000


class CircuitBreakerSettings(_Strict):
    """Open after ``failure_threshold`` consecutive failures; probe after ``cooldown_s``."""

    failure_threshold: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)


class ReliabilitySettings(_Strict):
    """Retries (exponential backoff with full jitter), timeouts, circuit breaker.

    ``timeout_s`` is the whole request's deadline, retries and fallbacks included;
    ``attempt_timeout_s`` bounds one upstream call (for streams: the wait for the first
    chunk and for each next one), unless the deployment sets its own ``timeout_s``.

    Backoff before retry *n* (1-based) is ``uniform(0, min(max, base * 2**(n-1)))``
    seconds ("full jitter", AWS Architecture Blog, *Exponential Backoff and Jitter*,
    2015), or the upstream's Retry-After when it sent one (capped at ``backoff_max_s``
    times 4).
    """

    num_retries: int = Field(default=2, ge=0, le=10)
    backoff_base_s: float = Field(default=0.25, ge=0)
    backoff_max_s: float = Field(default=8.0, ge=0)
    timeout_s: float = Field(default=600.0, gt=0)
    attempt_timeout_s: float = Field(default=300.0, gt=0)
    circuit_breaker: CircuitBreakerSettings = CircuitBreakerSettings()


class ServerSettings(_Strict):
    """Gateway HTTP settings. ``max_body_bytes`` bounds request bodies (413 beyond; 32 MiB
    by default: one 20 MB image or PDF, ``media.max_part_bytes``, is ~27 MB in base64);
    ``body_timeout_s`` bounds the time to receive a whole body (408 beyond).
    ``max_inflight_body_bytes`` bounds the bytes of large request bodies (over 1 MiB)
    the gateway holds at once, from reading them to answering: more wait unread (the
    client's upload pauses), up to ``body_timeout_s`` (then 503 ``server_busy``). Each
    held body costs about two to three times its size while served, so this bounds the
    gateway's memory under bursts of large images (benchmarks/media/RESULTS.md)."""

    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    max_inflight_body_bytes: int = Field(default=48 * 1024 * 1024, gt=0)
    master_key_env: str = "MODELMIX_MASTER_KEY"
    max_tokens_limit: int = Field(default=1_000_000, gt=0)


class MediaFetchSettings(_Strict):
    """Fetching ``http(s)`` image URLs so the guard can read them (docs/multimodal.md).

    Off by default: a gateway that fetches URLs on a caller's behalf is a server-side
    request forgery risk. When on, only hosts in ``allow_hosts`` (exact names, or
    ``*.example.com`` for sub-domains) are fetched, every address a name resolves to is
    checked before connecting (and the connection is pinned to it), redirects are
    followed only to allowed hosts, and loopback, private, link-local, multicast and
    reserved addresses are refused unless inside ``allow_networks`` (CIDRs of trusted
    internal document stores). ``max_bytes`` bounds the body, ``timeout_s`` the whole
    fetch, redirects included.
    """

    enabled: bool = False
    allow_hosts: tuple[str, ...] = ()
    allow_networks: tuple[str, ...] = ()
    max_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    max_redirects: int = Field(default=3, ge=0, le=10)


class MediaSettings(_Strict):
    """How requests carrying images, PDFs and audio are read, checked and converted
    (docs/multimodal.md).

    Attributes:
        read: read media locally (OCR, PDF text, speech recognition) so the data guard
            sees their text and text-only deployments can serve them. Off: media are
            unread, so a data policy treats them as its strictest class
            (``media-unread``) and nothing is converted.
        convert: ``auto``: a request goes to a deployment that takes its media when one
            may serve it, else its media are converted to text; ``always``: convert
            whatever was read (cheapest; text-only models serve); ``never``: do not.
        max_part_bytes: largest decoded media part (bytes); larger ones get a 413.
        max_parts: most media parts in one request (400 beyond).
        max_pdf_pages: most pages read from one PDF (400 beyond).
        max_audio_s: longest audio part (seconds) transcribed (400 beyond).
        read_timeout_s: longest a request waits for one part to be read (seconds); a part
            not read by then stays unread (under a policy: its strictest class), and its
            reading stops at the next PDF page or ~30 s window of audio.
        fetch: fetching ``http(s)`` image URLs (off by default).
    """

    read: bool = True
    convert: Literal["auto", "always", "never"] = "auto"
    max_part_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_parts: int = Field(default=16, gt=0)
    max_pdf_pages: int = Field(default=50, gt=0)
    max_audio_s: float = Field(default=600.0, gt=0)
    read_timeout_s: float = Field(default=60.0, gt=0)
    fetch: MediaFetchSettings = MediaFetchSettings()


class StoreSettings(_Strict):
    """Usage / audit store. ``url`` is a SQLAlchemy URL (``sqlite:///path`` or
    ``postgresql+psycopg://...``); ``MODELMIX_DB_URL`` overrides it. ``spill_path`` is the
    JSONL file records go to while the database is unreachable (replayed on the next start);
    by default ``<db file>.spill.jsonl`` for SQLite, ``./modelmix_usage.spill.jsonl`` else."""

    url: str = "sqlite:///modelmix_usage.db"
    enabled: bool = True
    spill_path: str | None = None
    #: Store each request's last user message (table ``request_texts``) so that
    #: ``modelmix router train --from-feedback`` can learn from it. Off by default: prompts
    #: may hold personal or confidential data, kept as long as the database is.
    keep_prompts: bool = False
    #: Store each answer's text too (needed by the ``learned_router.judge``).
    keep_responses: bool = False


class LearnedRouterSettings(_Strict):
    """Settings of the ``learned`` strategy (docs/routing-in-gateway.md).

    Attributes:
        artifact: ``default`` (the router shipped in the package) or a directory made by
            ``modelmix router train``.
        calibration: a ``calibration.json`` to use instead of the one in ``artifact``
            (for a read-only artifact such as the shipped one).
        target: the calibrated target used when a request names none (default: the
            calibration's own default).
        min_quality: threshold on predicted quality for predictors without a weak/strong
            pair (and the fallback when nothing is calibrated: see the docs).
        quality_rule: ``threshold`` (default): a weak/strong router compares P(strong
            needed) with the calibrated threshold, a router without a pair takes the
            cheapest candidate predicted ``>= min_quality``; ``utility``: any router
            takes the highest ``predicted quality - cost_weight * estimated USD per 1k
            requests`` (RouterBench's predictive router, Hu et al. 2024,
            arXiv:2403.12031). A request's ``router.min_quality`` uses ``threshold``.
        cost_weight: ``utility``'s weight, quality per USD per 1k requests (0.1: $1 more
            per 1k requests is worth 0.1 more predicted quality).
        judge: a deployment that grades stored (prompt, answer) pairs for
            ``router train --from-feedback`` (needs ``store.keep_responses``).
    """

    artifact: str = Field(default="default", min_length=1)
    calibration: str | None = None
    target: str | None = None
    min_quality: float = Field(default=0.5, ge=0, le=1)
    quality_rule: Literal["threshold", "utility"] = "threshold"
    cost_weight: float = Field(default=0.1, ge=0, allow_inf_nan=False)
    judge: str | None = None


#: How a group spreads requests over its members (docs/load-balancing.md): ``ordered``
#: (first healthy serves, the rest are fallbacks), ``weighted`` (random by ``weight``),
#: ``least-busy`` (fewest in-flight requests), ``latency`` (lowest EWMA latency),
#: ``cost`` (cheapest first).
BALANCE_STRATEGIES = ("ordered", "weighted", "least-busy", "latency", "cost")


class StateSettings(_Strict):
    """Where replicas share budgets, rate limits, breakers, key changes and the cache
    (docs/deploy.md, docs/keys.md).

    ``redis_url`` (``$MODELMIX_REDIS_URL`` overrides it): ``redis://host:port/db`` or
    ``rediss://``; None keeps every limit per process (one replica). ``on_redis_down``
    says what a request does when Redis cannot be reached: ``closed`` (the default)
    refuses requests of keys with limits (503 ``state_unavailable``); ``local`` falls back
    to this process's own limits, logged (N replicas may then spend up to N times a
    budget until Redis is back). ``timeout_s`` bounds each Redis call, seconds.
    ``max_connections``: the connection pool's size per process (a call waits for a free
    connection within its time bound).
    """

    redis_url: str | None = None
    on_redis_down: Literal["closed", "local"] = "closed"
    key_prefix: str = Field(default="modelmix:", pattern=r"^[A-Za-z0-9:._-]{1,64}$")
    timeout_s: float = Field(default=1.0, gt=0, le=30)
    max_connections: int = Field(default=128, ge=2, le=10_000)


class CacheSettings(_Strict):
    """The response cache (docs/cache.md): opt-in, per key unless ``shared``.

    ``mode``: ``off``, ``exact`` (same deployment, messages, tools and parameters) or
    ``semantic`` (exact, else a cached answer to a prompt whose embedding is at least
    ``similarity`` cosine-similar and that differs in no number, negation, polarity word
    or name). Keys and requests may opt in or out (``extra_body={"cache": ...}``).
    ``ttl_s``: seconds an entry lives. ``max_entries``: entries kept in process (LRU);
    Redis holds them when ``state.redis_url`` is set. ``shared``: requests in which the
    guard found nothing share one namespace across keys. ``max_response_bytes``: larger
    answers are not kept.
    """

    mode: Literal["off", "exact", "semantic"] = "off"
    ttl_s: float = Field(default=3600.0, gt=0)
    max_entries: int = Field(default=10_000, gt=0)
    #: calibrated on benchmarks/cache (false hits 0/536, paraphrases hit 85.8%)
    similarity: float = Field(default=0.94, gt=0, le=1)
    shared: bool = False
    max_response_bytes: int = Field(default=256 * 1024, gt=0)
