"""Matplotlib for the reports: the headless backend, and figures as base64 PNGs to inline in a page."""

from __future__ import annotations

import base64
import io


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: the report is written by a flow, often on a server
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> str:
    """The figure as base64 PNG data (closed afterwards), for ``src='data:image/png;base64,...'``."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode()
