"""API keys, tokens, private keys and passwords.

Two kinds of evidence: a provider's documented key prefix (``sk-``, ``AKIA``, ``ghp_``,
``xoxb-``, ``AIza``, ``sk_live_``, ``glpat-``, ``hf_``, JWTs, PEM private keys, credentials inside
a connection URL; a 40-character AWS secret access key next to its access key id or the word
"secret"), or an assignment to a secret-named field (``api_key = "..."``,
``"password": "..."``, ``Authorization: Bearer ...``, "my password is ...") whose value looks like
a secret. Sources: the providers' key-format docs and the rule sets of gitleaks and
detect-secrets (patterns re-derived, not copied).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

from modelmix.guard._base import Entity
from modelmix.guard._patterns import Anchored, Recognizer, anchors_of, gated, register

__all__ = ["SecretRecognizer", "entropy"]

_PREFIXED = re.compile(
    r"(?<![A-Za-z0-9_\-])(?:"
    r"sk-(?:proj-|ant-(?:api\d\d-)?|or-v1-|live-)?[A-Za-z0-9_\-]{20,}"
    r"|(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}"
    r"|xox[abposre]-[A-Za-z0-9\-]{10,}|xapp-[A-Za-z0-9\-]{20,}"
    r"|AIza[0-9A-Za-z_\-]{35}"
    r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{20,}"
    r"|glpat-[A-Za-z0-9_\-]{20,}|hf_[A-Za-z0-9]{30,}|npm_[A-Za-z0-9]{36}"
    r"|SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}|key-[0-9a-f]{32}"
    r"|dop_v1_[a-f0-9]{64}|shpat_[a-fA-F0-9]{32}|pypi-[A-Za-z0-9_\-]{50,}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r")(?![A-Za-z0-9_\-])"
)
#: Literal pieces one of which every :data:`_PREFIXED` match holds: ``in`` tests for them
#: (~4 µs per 400 characters) gate a scan that costs ~17 µs even when nothing matches
#: (``gh[pousr]_`` is spelt out; ``(?:sk|rk|pk)_(?:live|test)_`` holds ``k_live_`` or
#: ``k_test_``; ``xox[abposre]-`` holds ``xox``).
_PREFIX_PIECES = ("sk-", "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ghp_", "gho_", "ghu_",
                  "ghs_", "ghr_", "github_pat_", "xox", "xapp-", "AIza", "k_live_", "k_test_",
                  "whsec_", "glpat-", "hf_", "npm_", "SG.", "key-", "dop_v1_", "shpat_", "pypi-",
                  "eyJ")
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
                  r"(?:-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----|$)")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^\s:/@]{1,64}:(?P<value>[^\s@/]{3,128})@")
# A token as a URL's user name (https://<token>@github.com/...).
_URL_TOKEN = re.compile(r"(?<=://)(?P<value>[^\s:/@]{16,128})@")
_SECRET_NAME = (r"api[_\-. ]?key|apikey|secret(?:[_\-. ]?key)?|client[_\-. ]?secret|access[_\-. ]?"
                r"(?:key|token)|auth[_\-. ]?token|token|bearer|private[_\-. ]?key|"
                r"aws_secret_access_key|password|passwd|pwd|pw|passphrase|pass|passwort|"
                r"mot de passe|contraseña|contrasena|senha|wachtwoord|pin")
_ASSIGNED = Anchored(
    rf"(?<![A-Za-z])(?P<name>{_SECRET_NAME})(?![A-Za-z])[\"']?\s*(?:[:=]|=>|:=|\bis\b|\bwas\b|"
    r"\bto\b|\bist\b|\best\b|\bes\b)\s*[\"'`]?(?:Bearer\s+|Basic\s+|token\s+)?"
    r"(?P<value>[^\s\"'`,;)}\]\\]{4,200})",
    anchors_of(_SECRET_NAME),
)
# An AWS secret access key: 40 base64 characters, found next to an access key id or after the
# word "secret" (credentials files and CSVs put it there without a field name).
_AWS_KEY_ID = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_SECRET_WORD = re.compile(r"secret", re.IGNORECASE)
_AWS_REACH = 120
_BEARER = re.compile(r"\b(?:Bearer|Basic|Token)\s+(?P<value>[A-Za-z0-9_\-.~+/]{16,}=*)")
_PASSWORD_NAMES = re.compile(r"pass|pwd|pw\b|passwort|mot de passe|contrase|senha|wachtwoord|pin",
                             re.IGNORECASE)
_PLACEHOLDER = re.compile(r"^(?:x+|\*+|\.+|<[^>]*>|\$\{?[A-Za-z_]+\}?|%\(?\w+\)?s?|"
                          r"your[_\-]?\w*|changeme|none|null|true|false|example\w*|redacted|"
                          r"os\.environ.*|env\(.*|getenv.*|process\.env.*|required|optional|"
                          r"string|str|int|bool|secret|password|\w+\(.*)$", re.IGNORECASE)


def entropy(value: str) -> float:
    """Shannon entropy of ``value`` in bits per character."""
    counts = Counter(value)
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def _secret_like(value: str, *, password: bool) -> bool:
    """Whether an assigned value looks like a real secret rather than a word or placeholder."""
    if _PLACEHOLDER.match(value):
        return False
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    if password:
        return len(value) >= 6 and (has_digit or not value.isalpha() or not value.islower())
    if len(value) < 12 or not (has_digit and has_alpha):
        return False
    return entropy(value) >= 3.0


@register
class SecretRecognizer(Recognizer):
    """Credentials: known key formats, PEM private keys, URL passwords, secret assignments."""

    name = "secrets"
    types = ("API_KEY", "PASSWORD")

    def find(self, text: str) -> Iterator[Entity]:
        if not gated() or any(piece in text for piece in _PREFIX_PIECES):
            for match in _PREFIXED.finditer(text):
                yield Entity("API_KEY", match.start(), match.end(), 1.0)
        if "PRIVATE KEY" in text:
            for match in _PEM.finditer(text):
                yield Entity("API_KEY", match.start(), match.end(), 1.0)
        if "://" in text:
            for match in _URL_CREDENTIALS.finditer(text):
                yield Entity("PASSWORD", match.start("value"), match.end("value"), 0.95)
            for match in _URL_TOKEN.finditer(text):
                if _secret_like(match.group("value"), password=False):
                    yield Entity("API_KEY", match.start("value"), match.end("value"), 0.95)
        for match in _ASSIGNED.finditer(text):
            value = match.group("value").rstrip(".")
            is_password = _PASSWORD_NAMES.match(match.group("name")) is not None
            if _secret_like(value, password=is_password):
                kind = "PASSWORD" if is_password else "API_KEY"
                start = match.start("value")
                yield Entity(kind, start, start + len(value), 0.9)
        for match in (_BEARER.finditer(text) if not gated() or "Bearer" in text
                      or "Basic" in text or "Token" in text else ()):
            value = match.group("value")
            if _secret_like(value, password=False):
                yield Entity("API_KEY", match.start("value"), match.end("value"), 0.9)
        yield from _aws_secrets(text)


def _aws_secrets(text: str) -> Iterator[Entity]:
    """40-character AWS secret access keys near an access key id or the word "secret"."""
    anchors = ([*_AWS_KEY_ID.finditer(text)] if not gated() or "AKIA" in text
               or "ASIA" in text else [])
    if "ecret" in text or "ECRET" in text:
        anchors += _SECRET_WORD.finditer(text)
    for anchor in anchors:
        start = max(0, anchor.start() - _AWS_REACH)
        for match in _AWS_SECRET.finditer(text, start, anchor.end() + _AWS_REACH):
            value = match.group()
            if (any(c.isupper() for c in value) and any(c.islower() for c in value)
                    and any(c.isdigit() for c in value) and entropy(value) >= 4.0):
                yield Entity("API_KEY", match.start(), match.end(), 0.9)
