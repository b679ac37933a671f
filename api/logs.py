"""Logging for ``python -m api``: uvicorn's configuration plus the ``jacspec`` loggers, each line with its request id.

``jacspec.access`` (one line per request: method, path, status, duration) goes to stdout, where uvicorn's access
log went (``python -m api`` turns that one off: ours says the same and more); ``jacspec`` (errors) to stderr.
Structured (JSON) logs are issue #6's; this only makes sure every line names its request.
"""

from __future__ import annotations

import copy
from typing import Any

from uvicorn.config import LOGGING_CONFIG

FORMAT = "%(levelprefix)s [%(request_id)s] %(name)s: %(message)s"


def log_config() -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary for ``uvicorn.run(log_config=...)``."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"request_id": {"()": "api.request_id.RequestIdFilter"}}
    config["formatters"]["jacspec"] = {"()": "uvicorn.logging.DefaultFormatter", "fmt": FORMAT}
    config["handlers"]["jacspec"] = _handler("ext://sys.stderr")
    config["handlers"]["jacspec.access"] = _handler("ext://sys.stdout")
    config["loggers"]["jacspec"] = {"handlers": ["jacspec"], "level": "INFO", "propagate": False}
    config["loggers"]["jacspec.access"] = {"handlers": ["jacspec.access"], "level": "INFO", "propagate": False}
    return config


def _handler(stream: str) -> dict[str, Any]:
    return {"class": "logging.StreamHandler", "formatter": "jacspec", "filters": ["request_id"], "stream": stream}
