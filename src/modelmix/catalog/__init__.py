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
from modelmix.catalog._models import (
    OPENAI_COMPATIBLE_PROVIDERS,
    PROVIDERS,
    CircuitBreakerSettings,
    Deployment,
    Hosting,
    LearnedRouterSettings,
    MediaFetchSettings,
    MediaSettings,
    Modality,
    ReliabilitySettings,
    ServerSettings,
    StoreSettings,
    Tier,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "OPENAI_COMPATIBLE_PROVIDERS",
    "PROVIDERS",
    "Availability",
    "CircuitBreakerSettings",
    "Config",
    "Deployment",
    "Hosting",
    "LearnedRouterSettings",
    "MediaFetchSettings",
    "MediaSettings",
    "Modality",
    "ReliabilitySettings",
    "ServerSettings",
    "StoreSettings",
    "Tier",
    "config_from_dict",
    "config_from_env",
    "default_config",
    "load_config",
]
