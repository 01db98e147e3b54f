"""The OpenAI-compatible HTTP gateway."""

from modelmix.server._auth import Authenticator, KeyInfo, MasterKeyAuth
from modelmix.server.app import create_app

__all__ = ["Authenticator", "KeyInfo", "MasterKeyAuth", "create_app"]
