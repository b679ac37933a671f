"""``python -m api``: serve on JACSPEC_HOST:JACSPEC_PORT (127.0.0.1:8000 by default)."""

import uvicorn

from api.logs import log_config
from api.settings import Settings

if __name__ == "__main__":
    settings = Settings()
    uvicorn.run(
        "api.main:app",
        host=settings.host,
        port=settings.port,
        log_config=log_config(settings.log_format),
        access_log=False,
    )
