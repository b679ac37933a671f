"""``python -m api.healthcheck``: exit 0 if this machine's server answers ``GET /healthz`` with ``ok``, else 1.

The container's ``HEALTHCHECK`` (and docker-compose.yml's): the image has no curl, so it asks with the standard
library, at JACSPEC_HOST:JACSPEC_PORT (the loopback address when the server listens on every interface), past
any HTTP proxy the environment names, and gives up after a few seconds.
"""

from __future__ import annotations

import json
import sys
import urllib.request

from api.settings import Settings

TIMEOUT_S = 3.0
EVERY_INTERFACE = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def healthz_url(host: str, port: int) -> str:
    """Where the server listening on ``host:port`` answers /healthz."""
    host = EVERY_INTERFACE.get(host, host)
    return f"http://[{host}]:{port}/healthz" if ":" in host else f"http://{host}:{port}/healthz"


def healthy(url: str, timeout: float = TIMEOUT_S) -> bool:
    """Whether ``url`` answers 200 with ``{"status": "ok", ...}`` within ``timeout`` seconds."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return bool(response.status == 200 and json.load(response).get("status") == "ok")
    except (OSError, ValueError):
        return False


def main() -> int:
    settings = Settings()
    url = healthz_url(settings.host, settings.port)
    if healthy(url):
        return 0
    print(f"unhealthy: {url} did not answer ok", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
