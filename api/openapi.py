"""The OpenAPI document, with the request models that the routes parse themselves added to its components."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from jacspec import models
from jacspec.models import AnalysisRequest, BoundsRequest, Problem, RunEventRequest, SafetensorsRequest

DESCRIPTION = """
jacspec tells you, before or during training, whether the gradients of a feed-forward network will vanish or
explode, and by how much, layer by layer.

For z_j = W_j a_{j−1} + b_j and a_j = h_j(z_j), backpropagation multiplies the layer Jacobians
J_j = diag(h_j'(z_j)) W_j, so ‖∂a_L/∂a_l‖ ≤ ∏_{j=l+1}^{L} σ_j·sup|h_j'| with σ_j = ‖W_j‖₂. jacspec reports
that bound next to the true norms on probe inputs. Products are carried as log10 (`*_log10`); a plain float is
given only where it fits a float64. Every error is RFC 9457 `application/problem+json`.

The bound is a worst case. What a random network typically does comes from two theories, each field's description
giving its formula: mean-field signal propagation (Poole et al. 2016; Schoenholz et al. 2017) in every report — per
layer the variance fixed point q*, χ₁ = σ_w²·E[h'(√q*·z)²], the depth scale and the critical σ_w — and, with
`options.spectrum`, the singular values of each weight and of the input–output Jacobian at each probe next to the
free-probability prediction of their moments (Pennington, Schoenholz & Ganguli 2017, 2018).
"""


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the JSON body, with the model's examples (for the routes that
    read their bodies themselves)."""
    extra = model.model_config.get("json_schema_extra")
    examples: list[Any] = list(extra.get("examples", [])) if isinstance(extra, dict) else []  # type: ignore[arg-type]
    content: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    if examples:
        content["examples"] = {f"example {i + 1}": {"value": example} for i, example in enumerate(examples)}
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that also publishes the hand-parsed request models."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, extra = models_json_schema(
            [
                (AnalysisRequest, "validation"),
                (SafetensorsRequest, "validation"),
                (BoundsRequest, "validation"),
                (RunEventRequest, "validation"),
                (Problem, "serialization"),
            ],
            ref_template="#/components/schemas/{model}",
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in extra.get("$defs", {}).items():
            components.setdefault(name, definition)
        _restore_examples(components)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _restore_examples(components: dict[str, Any]) -> None:
    """Put back the contract models' examples as written: ``get_openapi`` drops their null fields."""
    for name, definition in components.items():
        model = getattr(models, name, None)
        if isinstance(model, type) and issubclass(model, BaseModel) and "examples" in definition:
            definition["examples"] = model.model_json_schema()["examples"]
