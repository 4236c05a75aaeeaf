"""Untrusted values and unforeseen errors as short, one-line text for rejects, failures and logs.

A value read from a source file, a dataset or a Label Studio answer can be megabytes long, hold
newlines or control characters, or not even print (an int too long for ``repr``); what goes into
a detail line is bounded and printable whatever it was.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any


def shown(value: Any, limit: int = 40) -> str:
    """A short, one-line ``repr`` of an untrusted value (containers by type and length)."""
    if isinstance(value, (list, dict, tuple)) and len(value) > 8:
        text = f"<{type(value).__name__} of {len(value)}>"
    else:
        try:
            text = repr(value)
        except (ValueError, RecursionError):     # an int too long to print, lists in lists in lists
            text = f"<{type(value).__name__}>"
    text = clean_text(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def clean_text(value: str) -> str:
    """Whitespace runs (newlines included) as one space; control, format and surrogate
    characters dropped: what is left prints on one line and encodes as UTF-8."""
    text = " ".join(value.split())
    if text.isprintable():
        return text
    return "".join(c for c in text if c == " " or unicodedata.category(c)[0] not in "CZ")


def unexpected(exc: BaseException) -> str:
    """A one-line detail for an exception nobody planned for (the type says most)."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message[:200]}" if message else type(exc).__name__


# what a library or a proxy may echo: an Authorization header or value, a JWT anywhere
_SECRET_PATTERNS = re.compile(r"(?i:authorization)['\"]?\s*[:=]\s*['\"]?[^'\",;}]+"
                              r"|\b(?:Token|Bearer)\s+[^\s'\",;]+"
                              r"|eyJ[\w-]*\.[\w-]*\.[\w-]*")
_MESSAGE_CHARS = 300


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` on one line and cut short, with each secret and anything shaped like an
    Authorization value or a JWT replaced by ``***``: a library's error may echo a header.

    >>> scrub("Invalid header value b'Token 0123abcd'", "0123abcd")
    "Invalid header value b'***'"
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _SECRET_PATTERNS.sub("***", text)
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS - 3] + "..."
