"""GET /v1/activations and GET /v1/init-schemes: what the service supports, with its formulas."""

from __future__ import annotations

from fastapi import APIRouter

from jacspec.models import ActivationInfo, InitSchemeInfo, Parameter
from service.activations import ACTIVATIONS, parameter_descriptions
from service.initializers import SCHEMES

router = APIRouter(prefix="/v1", tags=["catalog"])


@router.get("/activations", summary="Supported activations", description="Each with h, h' and sup|h'|.")
async def list_activations() -> list[ActivationInfo]:
    return [
        ActivationInfo(
            name=name,
            formula=cls.formula,
            derivative_formula=cls.derivative_formula,
            derivative_bound=cls().derivative_bound,
            bound_formula=cls.bound_formula,
            parameters=[
                Parameter(name=p, default=default, description=text)
                for p, (default, text) in parameter_descriptions(cls).items()
            ],
        )
        for name, cls in ACTIVATIONS.items()
    ]


@router.get("/init-schemes", summary="Supported init schemes", description="Each with the std of W's entries.")
async def list_init_schemes() -> list[InitSchemeInfo]:
    return [
        InitSchemeInfo(
            name=s.name, distribution=s.distribution, std_formula=s.std_formula, torch_equivalent=s.torch_equivalent
        )
        for s in SCHEMES.values()
    ]
