"""api/openapi.json, the committed OpenAPI document: ``make openapi`` (``python -m api.openapi_json``) rewrites it.

It is the document of an app with the default settings, so without API keys: with ``JACSPEC_API_KEYS`` set, the
served ``/openapi.json`` adds the two security schemes and the 401 answers. A test fails when the app's document
drifts from the committed one, so that every change of the contract shows in a diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from api.main import create_app
from api.settings import Settings

PATH = Path(__file__).with_name("openapi.json")


def document() -> dict[str, Any]:
    """The app's OpenAPI document, whatever JACSPEC_* variables are set."""
    return create_app(Settings(api_keys=[], cors_origins=[])).openapi()


def render(schema: dict[str, Any]) -> str:
    """The text of api/openapi.json: two-space indents, non-ASCII kept, a final newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    PATH.write_text(render(document()), encoding="utf-8")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
