"""Request text repeated in an error: cut to ECHO_CHARS characters and never raw markup.

An unknown key, a tag, a tensor name or a Content-Type may be any text the client sent — a megabyte, markup,
control characters. What a problem repeats of it is at most ECHO_CHARS characters (then "…"), with every
character that could start markup or a quote in HTML, JSON or a terminal (``< > & " ' ` \\``), every control
character and every non-printable one replaced by its ``\\uXXXX`` escape, so that the text can be shown anywhere
as it is.
"""

from __future__ import annotations

ECHO_CHARS = 64
ELLIPSIS = "…"
_UNSAFE = frozenset("<>&\"'`\\")


def clean(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis after it when cut) with unsafe characters escaped."""
    cut = text[:limit]
    safe = "".join(_escape(c) if c in _UNSAFE or not c.isprintable() else c for c in cut)
    return safe + (ELLIPSIS if len(text) > limit else "")


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """``value`` (its text, or its ``repr`` when it is not a string) cleaned and in single quotes: how a message
    names what the client sent."""
    text = value if isinstance(value, str) else repr(value)
    return f"'{clean(text, limit)}'"


def _escape(character: str) -> str:
    return "".join(f"\\u{unit:04x}" for unit in _utf16(character))


def _utf16(character: str) -> list[int]:
    code = ord(character)
    if code < 0x10000:
        return [code]
    code -= 0x10000
    return [0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)]
