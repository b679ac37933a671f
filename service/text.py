"""Words for messages."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` with its noun, singular for exactly 1 and plural otherwise: "1 column", "0 columns", "2 columns";
    ``plural`` for a noun that does not take an "s" ("entry", "entries")."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
