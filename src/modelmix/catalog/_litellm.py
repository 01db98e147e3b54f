"""LiteLLM's router settings in modelmix's terms (docs/load-balancing.md).

In a LiteLLM ``model_list``, entries that share a ``model_name`` are one group of
equivalent deployments, balanced by ``router_settings.routing_strategy``. modelmix writes
that as a group with a strategy (``groups: {gpt-4o: {strategy: weighted, members: [...]}}``);
a LiteLLM entry's ``weight``, ``rpm`` and ``tpm`` become the deployment's fields of the same
names, which mean the same (``weighted`` falls back to ``rpm``, then ``tpm``, as
``simple-shuffle`` does). A whole LiteLLM config is converted in ``_litellm_import``.
"""

from __future__ import annotations

from modelmix.errors import ConfigError

__all__ = ["LITELLM_STRATEGIES", "litellm_strategy"]

#: LiteLLM ``routing_strategy`` -> modelmix group strategy (see :func:`litellm_strategy`).
LITELLM_STRATEGIES: dict[str, str] = {
    "simple-shuffle": "weighted",
    "least-busy": "least-busy",
    "latency-based-routing": "latency",
    "cost-based-routing": "cost",
    "usage-based-routing": "least-busy",
    "usage-based-routing-v2": "least-busy",
}


def litellm_strategy(name: str | None) -> str:
    """The modelmix group strategy for LiteLLM's ``router_settings.routing_strategy``.

    - ``simple-shuffle`` (LiteLLM's default, also for None) -> ``weighted``: random by
      ``weight``, else ``rpm``, else ``tpm``, else uniform; the same rule.
    - ``least-busy`` -> ``least-busy``: fewest requests in flight.
    - ``latency-based-routing`` -> ``latency``: lowest recent latency, untried deployments
      first. LiteLLM averages the last 10 calls' seconds per completion token (streams:
      time to first token); modelmix keeps an EWMA of whole-call latency.
    - ``cost-based-routing`` -> ``cost``: cheapest first. LiteLLM sums the per-token input
      and output prices; modelmix weighs them by the request's estimated tokens.
    - ``usage-based-routing`` / ``usage-based-routing-v2`` -> ``least-busy``. LiteLLM picks
      the deployment with the fewest tokens used this minute among those under their
      ``rpm``/``tpm``. modelmix enforces ``rpm``/``tpm`` in the executor (a deployment
      over its limit is skipped like one answering 429), so what is left to map is "send
      to the one carrying the least now"; calls in flight is that, measured live rather
      than from per-minute counters, with no shared write per request (LiteLLM's
      production guide recommends ``simple-shuffle`` over usage-based routing for
      performance, BerriAI/litellm#14080).

    Raises:
        ConfigError: a strategy LiteLLM does not have, or one that is not load balancing
            (e.g. ``provider-budget-routing``), naming the ones accepted.

    Example::

        >>> litellm_strategy("latency-based-routing")
        'latency'
    """
    if name is None:
        return LITELLM_STRATEGIES["simple-shuffle"]
    try:
        return LITELLM_STRATEGIES[name]
    except KeyError:
        raise ConfigError(f"router_settings.routing_strategy: unsupported LiteLLM routing "
                          f"strategy {name!r}; expected one of {sorted(LITELLM_STRATEGIES)}"
                          ) from None
