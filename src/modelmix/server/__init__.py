"""The OpenAI-compatible HTTP gateway."""

from modelmix.server._auth import Authenticator, KeyInfo, MasterKeyAuth
from modelmix.server.app import create_app
from modelmix.server.keys import KeyStore, VirtualKeyAuth

__all__ = [
    "Authenticator",
    "KeyInfo",
    "KeyStore",
    "MasterKeyAuth",
    "VirtualKeyAuth",
    "create_app",
]
