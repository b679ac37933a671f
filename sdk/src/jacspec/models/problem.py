"""RFC 9457 problem details: the body of every error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FieldError(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"pointer": "/network/init/widths/1", "detail": "Input should be greater than or equal to 1"}]
        }
    )

    pointer: str = Field(description="RFC 6901 JSON pointer to the offending field of the request body.")
    detail: str


class Problem(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:jacspec:problem:invalid-request",
                    "title": "Invalid request",
                    "status": 422,
                    "detail": "/network/layers/1/weight: shape [3, 5] does not chain: "
                    "the previous layer outputs 4 values, "
                    "so this weight needs 4 columns",
                    "errors": [{"pointer": "/network/layers/1/weight", "detail": "shape [3, 5] does not chain: …"}],
                }
            ]
        }
    )

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None
    request_id: str | None = Field(
        None, description="The request's X-Request-ID (RFC 9457 extension member): quote it when reporting an error."
    )
