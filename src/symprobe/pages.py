"""Pieces of symprobe's self-contained HTML pages (the study report, the bench table): one style sheet, tables
of numbers and matplotlib figures embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

CSS = """body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.85em}td,th{border:1px solid #bbb;padding:3px 6px;text-align:left}
caption{font-weight:bold;text-align:left;margin-bottom:4px}figure{margin:1em 0}img{max-width:100%}
.note{background:#fff6d5;padding:0.6em;border-left:4px solid #e0b000}.cite{color:#555;font-size:0.9em}"""


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_base64(fig) -> str:
    """``fig`` as a base64 PNG (90 dpi) for an ``<img src='data:…'>``; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers to ``digits`` significant digits, None as "–", booleans as yes/no, text escaped."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        if not np.isfinite(value):
            raise ValueError(f"non-finite value {value} in the report")
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def table(name: str, caption: str, header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table with id ``table-NAME``; string cells are inserted as given (already HTML), others via :func:`fmt`."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, str) else fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f'<table id="table-{name}" class="study-table"><caption>{html.escape(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
