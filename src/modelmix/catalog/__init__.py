"""Catalog: deployments, groups and settings, loaded from YAML and validated."""

from modelmix.catalog._config import (
    CONFIG_ENV,
    Availability,
    Config,
    config_from_dict,
    config_from_env,
    load_config,
)
from modelmix.catalog._default import DEFAULT_CONFIG, default_config
from modelmix.catalog._known import KnownModel, KnownTable, known_source, known_table
from modelmix.catalog._litellm import LITELLM_STRATEGIES, litellm_strategy
from modelmix.catalog._litellm_import import convert_litellm, is_litellm_config
from modelmix.catalog._models import (
    BALANCE_STRATEGIES,
    OPENAI_COMPATIBLE_PROVIDERS,
    PROVIDERS,
    CacheSettings,
    CircuitBreakerSettings,
    Deployment,
    Hosting,
    LearnedRouterSettings,
    MediaFetchSettings,
    MediaSettings,
    Modality,
    ReliabilitySettings,
    ServerSettings,
    StateSettings,
    StoreSettings,
    Tier,
)

__all__ = [
    "BALANCE_STRATEGIES",
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "LITELLM_STRATEGIES",
    "OPENAI_COMPATIBLE_PROVIDERS",
    "PROVIDERS",
    "Availability",
    "CacheSettings",
    "CircuitBreakerSettings",
    "Config",
    "Deployment",
    "Hosting",
    "KnownModel",
    "KnownTable",
    "LearnedRouterSettings",
    "MediaFetchSettings",
    "MediaSettings",
    "Modality",
    "ReliabilitySettings",
    "ServerSettings",
    "StateSettings",
    "StoreSettings",
    "Tier",
    "config_from_dict",
    "config_from_env",
    "convert_litellm",
    "default_config",
    "is_litellm_config",
    "known_source",
    "known_table",
    "litellm_strategy",
    "load_config",
]
