"""Render the reports' HTML from the Jinja2 templates in ``templates/``: Python computes what a page shows, the
templates say how it looks.

Autoescaping is on for every template, so every string that comes from the data (class folder names, file
names, error messages) reaches the page as text, never as markup; only the templates' own text is markup.
Undefined names fail loudly (StrictUndefined) instead of rendering as empty text.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

TEMPLATES = Path(__file__).with_name("templates")


@cache
def environment():
    import jinja2  # installed with Prefect

    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context) -> str:
    """The named template (e.g. "report.html") rendered with ``context``."""
    return environment().get_template(template).render(**context)
