"""The generated parts of docs/: ``make docs`` (``python -m api.reference``) rewrites them.

- docs/report.md, the report's fields: the models in ``jacspec.models.report`` are where each field's meaning is
  written; this renders them as tables, one per model, in the order a report nests them.
- The settings table of docs/operations.md, from the fields of ``api.settings.Settings``.

A test fails when a committed page drifts from what this writes.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from api.settings import Settings
from jacspec.models import AnalysisReport, SurveyReport

DOCS = Path(__file__).resolve().parent.parent / "docs"
REPORT = DOCS / "report.md"
OPERATIONS = DOCS / "operations.md"
SETTINGS_START, SETTINGS_END = "<!-- settings -->", "<!-- /settings -->"

INTRO = """# Report fields

What `POST /v1/analyses` answers, field by field. This page is generated from the contract models
(`sdk/src/jacspec/models/report.py`) by `make docs`; `/redoc` on a running server shows the same descriptions
beside the schema. The mathematics behind the fields is in [mathematics.md](mathematics.md).

A `.safetensors` upload that is no chain of layers (or whose request part says `"survey": true`) is answered with
the weight survey instead, a `SurveyReport` (`sdk/src/jacspec/models/survey.py`), whose fields follow the
analysis report's.
"""


def models(root: type[BaseModel] = AnalysisReport) -> list[type[BaseModel]]:
    """``root`` and every model its fields hold, depth first, each once."""
    seen: list[type[BaseModel]] = []

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.append(model)
        for info in model.model_fields.values():
            for inner in _nested(info.annotation):
                visit(inner)

    visit(root)
    return seen


def _nested(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation refers to (``X | None``, ``list[X]``, ``dict[str, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _nested(arg)]


def _type_name(annotation: Any) -> str:
    """A short name for a field's type: ``float | null``, ``list[LayerReport]``, ``"dense" | "conv2d"``."""
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        return annotation.__name__
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(f'"{arg}"' for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    name = getattr(origin, "__name__", str(origin))
    return f"{name}[{', '.join(_type_name(arg) for arg in args)}]"


def _meaning(model: type[BaseModel], name: str) -> str:
    """The field's description; for a plain value beside its ``*_log10``, what it is; for a nested model, where
    its fields are described."""
    info = model.model_fields[name]
    if info.description:
        return info.description
    if f"{name}_log10" in model.model_fields:
        return f"10^{name}_log10 where it fits a float64, else null."
    inner = _nested(info.annotation)
    return f"See `{inner[0].__name__}` below." if inner else ""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def report_page() -> str:
    """docs/report.md: the introduction, then per model its docstring and a table of its fields."""
    sections = [INTRO]
    survey = [model for model in models(SurveyReport) if model not in models()]
    for model in [*models(), *survey]:
        lines = [f"## `{model.__name__}`", ""]
        if model.__doc__:
            lines += [" ".join(model.__doc__.split()), ""]
        lines += ["| field | type | meaning |", "|---|---|---|"]
        for name, info in model.model_fields.items():
            meaning = _cell(_meaning(model, name))
            lines.append(f"| `{name}` | {_cell(_type_name(info.annotation))} | {meaning} |")
        sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)


def settings_table() -> str:
    """A table of every setting: its variable, its default and its description."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
        shown = "empty" if default in ([], None) else f"`{default:g}`" if isinstance(default, float) else f"`{default}`"
        lines.append(f"| `JACSPEC_{name.upper()}` | {shown} | {_cell(info.description or '')} |")
    return "\n".join(lines)


def operations_page(text: str) -> str:
    """``text`` (docs/operations.md) with the settings table between its markers written anew."""
    head, rest = text.split(SETTINGS_START, 1)
    _, tail = rest.split(SETTINGS_END, 1)
    return f"{head}{SETTINGS_START}\n{settings_table()}\n{SETTINGS_END}{tail}"


def main() -> None:
    REPORT.write_text(report_page(), encoding="utf-8")
    OPERATIONS.write_text(operations_page(OPERATIONS.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {REPORT} and {OPERATIONS}")


if __name__ == "__main__":
    main()
