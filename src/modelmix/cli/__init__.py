"""The ``modelmix`` command: every sub-command lives in this package.

``serve``, ``chat``, ``models``, ``usage``, ``keys`` and ``demo`` (``_app``, ``_keys``,
``_demo``), ``router`` (``_router``: train / score / info / eval; ``_router_calibrate``:
calibrate / export-feedback), ``guard`` (``_guard``) and ``audit`` (``_audit``). Output
goes through one helper (``_output``) and the catalog through one loader
(:func:`modelmix.catalog.config_from_env`: ``--config``, else ``$MODELMIX_CONFIG``, else
the embedded default).

Layer: the top; nothing imports it.
"""

from modelmix.cli._app import app, main

__all__ = ["app", "main"]
