"""Refuse work that is too large before any array is allocated: an estimate beyond the settings is a 413.

Each refusal names what made the work large, as JSON pointers: the widths (or layers, or uploaded file) for the
parameter count, and those with the probe inputs (and ``options.spectrum``, when asked for) for the estimated work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from api.problems import ProblemError
from api.settings import Settings
from jacspec.models import FieldError
from service.cost import WorkEstimate


@dataclass(frozen=True)
class Fields:
    """The pointers of the fields that set an estimate's sizes: the network's, the number of probes', and
    ``options.spectrum``'s."""

    network: str
    probes: str
    spectrum: str


def check(work: WorkEstimate, settings: Settings, fields: Fields) -> None:
    """413 when the parameters or the estimated floating-point work exceed JACSPEC_MAX_PARAMETERS or
    JACSPEC_MAX_FLOPS; the detail says when the work would fit without the spectrum."""
    if work.parameters > settings.max_parameters:
        detail = (
            f"the network has {work.parameters} parameters; this server accepts at most {settings.max_parameters} "
            "(JACSPEC_MAX_PARAMETERS)"
        )
        errors = [FieldError(pointer=fields.network, detail=f"{work.parameters} parameters")]
        raise ProblemError(413, "Content Too Large", detail, errors=errors)
    if work.flops <= settings.max_flops:
        return
    errors = [
        FieldError(pointer=fields.network, detail=f"widths {_short(work.widths)}"),
        FieldError(pointer=fields.probes, detail=f"{work.probes} probes"),
    ]
    extra = ""
    if work.spectrum != "none":
        errors.append(FieldError(pointer=fields.spectrum, detail=f'"{work.spectrum}": full SVDs'))
        if work.flops_without_spectrum <= settings.max_flops:
            extra = (
                f' with options.spectrum = "{work.spectrum}" (the singular values of every weight and of each '
                "probe's input–output Jacobian; without them the analysis fits)"
            )
    detail = (
        f"the analysis would take about {work.flops:.3g} floating-point operations{extra}; this server accepts at "
        f"most {settings.max_flops:.3g} (JACSPEC_MAX_FLOPS)"
    )
    raise ProblemError(413, "Content Too Large", detail, errors=errors)


def _short(widths: Sequence[int]) -> str:
    """The widths, abbreviated when there are many."""
    if len(widths) <= 8:
        return str(list(widths))
    return f"[{', '.join(map(str, widths[:4]))}, …, {', '.join(map(str, widths[-2:]))}] ({len(widths) - 1} layers)"
