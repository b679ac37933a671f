"""Logging for ``python -m api``: uvicorn's configuration (its formatters and handlers, also used by granian's
``_granian`` logger) plus the ``jacspec`` loggers, each line with its request id.

``jacspec.access`` (one line per request: method, path, status, duration) goes to stdout, where the server's
access log would go (``python -m api`` turns that one off: ours says the same and more); ``jacspec`` (errors) and
the server's own lines to stderr. With ``JACSPEC_LOG_FORMAT=json`` every line, the server's included, is one JSON
object (``JsonFormatter``).
"""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

from uvicorn.config import LOGGING_CONFIG

GRANIAN_LOGGER = "_granian"
"""The logger of granian's own lines (start, workers, shutdown), Python's and its Rust core's."""
FORMAT = "%(levelprefix)s [%(request_id)s] %(name)s: %(message)s"

_NOT_EXTRA = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}
"""The attributes every ``LogRecord`` has: anything else on a record came from ``extra=`` or a filter."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line.

    ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message``, ``pid``, then every field given
    with ``extra=`` or set by a filter: ``request_id`` (``RequestIdFilter``) and, on the access line, ``method``,
    ``path``, ``status`` and ``duration_ms``. A traceback is ``exception``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _NOT_EXTRA and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def log_config(log_format: Literal["text", "json"] = "text") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary for granian's ``log_dictconfig`` (or uvicorn's ``log_config``)."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"request_id": {"()": "api.request_id.RequestIdFilter"}}
    config["formatters"]["jacspec"] = {"()": "uvicorn.logging.DefaultFormatter", "fmt": FORMAT}
    config["handlers"]["jacspec"] = _handler("ext://sys.stderr")
    config["handlers"]["jacspec.access"] = _handler("ext://sys.stdout")
    config["loggers"]["jacspec"] = {"handlers": ["jacspec"], "level": "INFO", "propagate": False}
    config["loggers"]["jacspec.access"] = {"handlers": ["jacspec.access"], "level": "INFO", "propagate": False}
    config["loggers"][GRANIAN_LOGGER] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    if log_format == "json":
        config["formatters"] = {name: {"()": "api.logs.JsonFormatter"} for name in config["formatters"]}
        config["handlers"]["default"]["filters"] = ["request_id"]  # uvicorn's records made in a request name it
    return config


def _handler(stream: str) -> dict[str, Any]:
    return {"class": "logging.StreamHandler", "formatter": "jacspec", "filters": ["request_id"], "stream": stream}
