"""Refuse work that is too large before any array is allocated: an estimate beyond the settings is a 413.

Each refusal names what made the work large, as JSON pointers — the widths (or layers, or uploaded file) for the
parameter count, and those with the probe inputs (and ``options.spectrum`` and ``options.rtol``, where they add to
it) for the estimated work and answer — and, in its detail, the changes to the request that would fit, each with
its estimate (service.cost.changes_that_fit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from api.problems import ProblemError
from api.settings import Settings
from jacspec.models import FieldError
from service.cost import (
    LAYER_BYTES,
    LAYER_OVERHEAD,
    RESPONSE_BASE,
    Change,
    Declared,
    SurveyEstimate,
    WorkEstimate,
    changes_that_fit,
    minimum,
)
from service.spectral import LANCZOS_MIN_RTOL
from service.text import counted

TITLE = "Content Too Large"


@dataclass(frozen=True)
class Fields:
    """The pointers of the fields that set an estimate's sizes: the network's, the number of probes',
    ``options.spectrum``'s and ``options.rtol``'s, and the init scheme's and depth's where the request has them."""

    network: str
    probes: str
    spectrum: str
    rtol: str = "/options/rtol"
    scheme: str | None = None
    depth: str | None = None


def fits(work: WorkEstimate, settings: Settings) -> bool:
    """Whether the estimate is within JACSPEC_MAX_FLOPS and JACSPEC_MAX_RESPONSE_BYTES."""
    return work.flops <= settings.max_flops and work.response_bytes <= settings.max_response_bytes


def check_depth(depth: int, settings: Settings, fields: Fields) -> None:
    """413 at once when ``depth`` layers alone exceed the limits (service.cost.minimum), before any layer's size is
    read: a refusal whose time does not grow with the body."""
    flops, size = minimum(depth)
    if flops <= settings.max_flops and size <= settings.max_response_bytes:
        return
    most = min(int(settings.max_flops // LAYER_OVERHEAD), (settings.max_response_bytes - RESPONSE_BASE) // LAYER_BYTES)
    fit = f"with at most {counted(most, 'layer')} it could fit" if most > 0 else "no network fits"
    detail = (
        f"{counted(depth, 'layer')} would take about {flops:.3g} floating-point operations at the least and a "
        f"{size}-byte answer; this server accepts at most {settings.max_flops:.3g} ({settings.flops_limit}) and "
        f"{settings.max_response_bytes} bytes (JACSPEC_MAX_RESPONSE_BYTES): {fit}"
    )
    raise ProblemError(413, TITLE, detail, errors=[FieldError(pointer=fields.depth or fields.network, detail=detail)])


def check(work: WorkEstimate, settings: Settings, fields: Fields, declared: Declared | None = None) -> None:
    """413 when the parameters exceed JACSPEC_MAX_PARAMETERS, or the estimated work or answer JACSPEC_MAX_FLOPS or
    JACSPEC_MAX_RESPONSE_BYTES; the detail names the changes that would fit (given the ``declared`` sizes)."""
    if work.parameters > settings.max_parameters:
        detail = (
            f"the network has {counted(work.parameters, 'parameter')}; this server accepts at most "
            f"{settings.max_parameters} (JACSPEC_MAX_PARAMETERS)"
        )
        errors = [FieldError(pointer=fields.network, detail=counted(work.parameters, "parameter"))]
        raise ProblemError(413, TITLE, detail, errors=errors)
    if fits(work, settings):
        return
    errors = [
        FieldError(pointer=fields.network, detail=f"widths {_short(work.widths)}"),
        FieldError(pointer=fields.probes, detail=counted(work.probes, "probe")),
    ]
    if work.spectrum != "none":
        errors.append(FieldError(pointer=fields.spectrum, detail=f'"{work.spectrum}": full SVDs'))
    if declared is not None and declared.rtol < LANCZOS_MIN_RTOL:
        errors.append(FieldError(pointer=fields.rtol, detail=f"rtol {declared.rtol:g} forces the dense solver"))
    over = []
    if work.flops > settings.max_flops:
        over.append(
            f"about {work.flops:.3g} floating-point operations (about {work.seconds:.3g} s of one core); this server "
            f"accepts at most {settings.max_flops:.3g} ({settings.flops_limit})"
        )
    if work.response_bytes > settings.max_response_bytes:
        over.append(_answer_over(work.response_bytes, settings))
    detail = "the analysis would take " + " and ".join(over)
    if declared is not None:
        detail += "; " + _suggestion(changes_that_fit(declared, lambda w: fits(w, settings)), fields)
    raise ProblemError(413, TITLE, detail, errors=errors)


def _answer_over(size: int, settings: Settings) -> str:
    """What a 413 says of an answer of ``size`` bytes over JACSPEC_MAX_RESPONSE_BYTES."""
    return (
        f"an answer of about {counted(size, 'byte')}; this server sends at most {settings.max_response_bytes} "
        "(JACSPEC_MAX_RESPONSE_BYTES)"
    )


def _suggestion(changes: Sequence[Change], fields: Fields) -> str:
    """The changes that fit, cheapest first, each with its estimate."""
    if not changes:
        return (
            "no single change of the spectrum, rtol, init scheme, probes, widths or depth fits: the network is too "
            "large"
        )
    parts = [f"{_change(change, fields)} it would be {_size(change.work)}" for change in changes]
    return "with " + "; or with ".join(parts) + ", which fits"


def _change(change: Change, fields: Fields) -> str:
    if change.what == "spectrum":
        return f'options.spectrum = "{change.value}" ({fields.spectrum})'
    if change.what == "rtol":
        return f"options.rtol ≥ {change.value:g} ({fields.rtol})"
    if change.what == "scheme":
        return f'scheme "{change.value}" instead of "orthogonal" ({fields.scheme})'
    if change.what == "probes":
        return f"at most {counted(int(change.value), 'probe')} ({fields.probes})"
    if change.what == "width":
        return f"every width at most {change.value} ({fields.depth})"
    return f"at most {counted(int(change.value), 'layer')} ({fields.depth})"


def _size(work: WorkEstimate) -> str:
    return f"{work.flops:.3g} floating-point operations and {work.response_bytes} bytes"


def _short(widths: Sequence[int]) -> str:
    """The widths, abbreviated when there are many."""
    if len(widths) <= 8:
        return str(list(widths))
    return f"[{', '.join(map(str, widths[:4]))}, …, {', '.join(map(str, widths[-2:]))}] ({len(widths) - 1} layers)"


def check_survey(
    work: SurveyEstimate, settings: Settings, costliest: Sequence[tuple[str, float]], spectrum: str
) -> None:
    """413 when a survey's matrices exceed JACSPEC_MAX_PARAMETERS, or its estimated work or answer JACSPEC_MAX_FLOPS
    or JACSPEC_MAX_RESPONSE_BYTES; the detail names the costliest tensors (``costliest``: name and flops)."""
    over = []
    if work.parameters > settings.max_parameters:
        over.append(
            f"matrices of {counted(work.parameters, 'entry', 'entries')} in all; this server accepts at most "
            f"{settings.max_parameters} (JACSPEC_MAX_PARAMETERS)"
        )
    if work.flops > settings.max_flops:
        names = ", ".join(f"{name} ({flops:.3g})" for name, flops in costliest)
        over.append(
            f"about {work.flops:.3g} floating-point operations (about {work.seconds:.3g} s of one core; an SVD of an "
            f"m × n matrix takes O(m·n·min(m, n)): the costliest are {names}); this server accepts at most "
            f"{settings.max_flops:.3g} ({settings.flops_limit})"
        )
    if work.response_bytes > settings.max_response_bytes:
        over.append(_answer_over(work.response_bytes, settings))
    if not over:
        return
    detail = "the weight survey would take " + " and ".join(over)
    errors = [FieldError(pointer="/weights", detail=detail)]
    if spectrum != "none" and work.response_bytes > settings.max_response_bytes:
        errors.append(FieldError(pointer="/request/options/spectrum", detail=f'"{spectrum}": every singular value'))
    raise ProblemError(413, TITLE, detail, errors=errors)
