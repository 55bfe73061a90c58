"""Jinja2 rendering of the Markdown templates in `templates/`, and atomic writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"


def num(value: Any) -> str:
    """A number as a card shows it: ints whole, floats to 4 significant digits, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def show(value: Any) -> str:
    """Any fact's value on one Markdown line: numbers via `num`, lists and dicts compactly."""
    if isinstance(value, int | float | bool) or value is None:
        return num(value)
    if isinstance(value, list):
        return ", ".join(show(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {show(v)}" for k, v in value.items())
    return str(value).replace("\n", " ")


def lines(value: Any) -> list[str]:
    """A structured value as one line per item (a list of records) or per key; else one line."""
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return [show(v) for v in value]
    if isinstance(value, dict) and any(isinstance(v, dict | list) for v in value.values()):
        return [f"{k}: {show(v)}" for k, v in value.items()]
    return [show(value)]


def render(template: str, **context: Any) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=False,  # Markdown, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = num
    env.filters["show"] = show
    env.filters["lines"] = lines
    return env.get_template(template).render(**context)
