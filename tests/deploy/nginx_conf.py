"""Reading deploy/nginx.conf, and pointing it at other upstreams and another port for a test."""

from __future__ import annotations

import re
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
SERVER = re.compile(r"^(\s*)server\s+(\S+?)((?:\s+[^;]*)?);", re.MULTILINE)
LISTEN = re.compile(r"^(\s*)listen\s+[^;]+;", re.MULTILINE)


def body_limit(text: str) -> int:
    """``client_max_body_size`` in bytes."""
    [(number, unit)] = re.findall(r"^\s*client_max_body_size\s+(\d+)([kKmMgG]?);", text, flags=re.MULTILINE)
    return int(number) * UNITS[unit.lower()]


def directive(text: str, name: str) -> str:
    """The value of the one ``name`` directive of ``text``."""
    [value] = re.findall(rf"^\s*{name}\s+([^;]+);", text, flags=re.MULTILINE)
    return str(value)


def seconds(text: str, name: str) -> float:
    """A time directive (``10s``, ``500ms``, ``2m``) in seconds."""
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", directive(text, name)).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 1e-3, "s": 1.0, None: 1.0, "m": 60.0}[unit]


def header_bytes(text: str) -> int:
    """The most ``large_client_header_buffers`` holds: count × size."""
    count, size = directive(text, "large_client_header_buffers").split()
    return int(count) * int(size[:-1]) * UNITS[size[-1].lower()] if size[-1].isalpha() else int(count) * int(size)


def with_timeouts(text: str, value: str) -> str:
    """``text`` with its client header, body and keep-alive timeouts set to ``value`` (e.g. ``1s``), for a test."""
    for name in ("client_header_timeout", "client_body_timeout"):
        text, count = re.subn(rf"^(\s*){name}\s+[^;]+;", rf"\g<1>{name} {value};", text, flags=re.MULTILINE)
        assert count == 1, name
    # keepalive_timeout appears twice: the server's (clients) and the upstream block's (replicas); only the first.
    server = rf"\g<1>keepalive_timeout {value};"
    text, count = re.subn(r"^(\s*)keepalive_timeout\s+10s;", server, text, flags=re.MULTILINE)
    assert count == 1, "keepalive_timeout"
    return text


def upstream_servers(text: str) -> list[str]:
    """The ``host:port`` of every ``server`` of the upstream block."""
    upstream = re.search(r"upstream\s+\w+\s*\{(.*?)\}", text, flags=re.DOTALL)
    assert upstream is not None, "no upstream block"
    return [match.group(2) for match in SERVER.finditer(upstream.group(1))]


def pointed_at(text: str, servers: list[str], listen: str) -> str:
    """``text`` with its one upstream server replaced by ``servers`` (same parameters) and its one ``listen`` by
    ``listen``; nothing else changes."""
    [server] = [m for m in SERVER.finditer(text) if m.group(2) in upstream_servers(text)]
    indent, _, parameters = server.groups()
    lines = "\n".join(f"{indent}server {address}{parameters};" for address in servers)
    text = text[: server.start()] + lines + text[server.end() :]
    text, count = LISTEN.subn(lambda m: f"{m.group(1)}listen {listen};", text)
    assert count == 1, "one listen directive"
    return text
