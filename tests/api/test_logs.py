"""``python -m api``'s logging: text lines by default, one JSON object per line with JACSPEC_LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

from api.logs import JsonFormatter, log_config

ROOT = Path(__file__).resolve().parents[2]


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.getLogger("jacspec.access").makeRecord(
        "jacspec.access", logging.INFO, __file__, 1, message, args, None, extra=extra
    )
    return record


def test_a_record_is_one_json_object_with_its_extra_fields() -> None:
    record = _record("%s %s %d", "GET", "/healthz", 200, request_id="r-1", status=200, duration_ms=1.25)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "GET /healthz 200"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "jacspec.access"
    assert entry["request_id"] == "r-1"
    assert entry["status"] == 200
    assert entry["duration_ms"] == 1.25
    assert entry["time"].endswith("+00:00")
    assert "args" not in entry
    assert "msg" not in entry


def test_a_traceback_stays_on_the_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.getLogger("jacspec").makeRecord(
            "jacspec", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_an_unserialisable_extra_is_written_as_text() -> None:
    entry = json.loads(JsonFormatter().format(_record("x", where=Path("/tmp/a"))))
    assert entry["where"] == "/tmp/a"


def test_json_config_formats_every_logger() -> None:
    """Applied as uvicorn applies it (in a child process: dictConfig would rewire this one's loggers)."""
    script = textwrap.dedent(
        """
        import logging, logging.config
        from api.logs import log_config
        from api.request_id import request_id
        logging.config.dictConfig(log_config("json"))
        request_id.set("rid-7")
        logging.getLogger("jacspec.access").info("GET / 200", extra={"status": 200})
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
        logging.getLogger("jacspec").warning("careful")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    stdout = [json.loads(line) for line in result.stdout.splitlines()]
    stderr = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(e["logger"], e["message"], e["request_id"]) for e in stdout] == [("jacspec.access", "GET / 200", "rid-7")]
    assert [(e["logger"], e["message"], e["request_id"]) for e in stderr] == [
        ("uvicorn.error", "Started server process [42]", "rid-7"),
        ("jacspec", "careful", "rid-7"),
    ]


def test_text_config_is_uvicorns_with_the_request_id() -> None:
    config = log_config()
    assert config["formatters"]["jacspec"]["fmt"] == "%(levelprefix)s [%(request_id)s] %(name)s: %(message)s"
    assert config["formatters"]["default"]["()"] == "uvicorn.logging.DefaultFormatter"
    assert "filters" not in config["handlers"]["default"]
