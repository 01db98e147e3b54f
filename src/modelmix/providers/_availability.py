"""Whether a deployment can take calls at all in this environment."""

from __future__ import annotations

from modelmix.catalog import Availability, Deployment

__all__ = ["availability"]


def availability(dep: Deployment) -> Availability:
    """``dep``'s availability: unavailable (not an error) when its API key variable is
    unset, or, for the embedded ``local`` provider, when llama.cpp or the model file is
    missing (with why)."""
    if dep.api_key_env and not dep.api_key():
        return Availability(available=False, reason=f"{dep.api_key_env} is not set")
    if dep.provider == "local":
        from modelmix.providers.local import local_model_status  # llama.cpp loads lazily

        ok, why = local_model_status(dep)
        return Availability(available=ok, reason=why)
    return Availability(available=True)
