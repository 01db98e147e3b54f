"""What of a caller's own text an error message may repeat.

Error messages go back to the caller, and also into logs and the usage row's ``error``
column: a value that is not a short plain name (a type, an id) may be anything the
caller typed, personal data included, so it is not repeated.
"""

from __future__ import annotations

import re

__all__ = ["named"]

#: What may be repeated: a type or id as the APIs spell them (letters, digits, ``_.:-``).
_PLAIN = re.compile(r"[a-z0-9_.:-]{1,64}", re.IGNORECASE)


def named(what: str, value: object) -> str:
    """``"<what> '<value>'"`` when ``value`` is a short plain name (matching
    ``^[a-z0-9_.:-]{1,64}$``, any case), else ``"an unknown <what>"``.

    Example::

        named("type", "web_search")        # "type 'web_search'"
        named("type", "SSN 536-22-8761")   # "an unknown type"
    """
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return f"{what} {value!r}"
    return f"an unknown {what}"
