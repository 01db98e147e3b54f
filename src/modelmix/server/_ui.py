"""(being written for issue 14)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from modelmix.server._gateway import Gateway

__all__ = ["routes"]


def routes(gateway: Gateway) -> list[BaseRoute]:
    """The routes this module serves, under ``/v1`` (app.py adds the same without it)."""
    return []
