"""Text and tables for the chapters: HTML tables and (K, L) cells in prose.

``html_table`` renders a notebook table in every book renderer (all chapters);
``describe_cells`` names the cells of a (K, L) map in words (chapter 2's Theorem-1 maps).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np
from IPython.display import HTML


class Markup(str):
    """A table cell that is already HTML (a link, say): ``html_table`` does not escape it."""


def link(text: str, href: str) -> Markup:
    """An HTML link as a ``Markup`` cell."""
    return Markup(f'<a href="{escape(href, quote=True)}">{escape(text)}</a>')


def html_table(headers, rows, caption: str = ""):
    """An HTML table (IPython ``HTML``) for a notebook output: rendered by any book renderer.

    ``headers`` is a list of column titles; ``rows`` a list of lists of cell values, shown with
    ``str`` (format them first) and escaped, except ``Markup`` cells. Numbers are right-aligned.
    """

    def cell(value, tag):
        align = "right" if isinstance(value, int | float) or _numeric(value) else "left"
        text = value if isinstance(value, Markup) else escape(str(value))
        return f'<{tag} style="text-align: {align}">{text}</{tag}>'

    head = "".join(cell(h, "th") for h in headers)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    title = f"<caption>{escape(caption)}</caption>" if caption else ""
    return HTML(
        f'<table class="table">{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _numeric(text) -> bool:
    try:
        float(str(text).replace("×", ""))
    except ValueError:
        return False
    return True


def describe_cells(mask, Ks: Sequence[int], Ls: Sequence[int]) -> str:
    """Text naming the True cells of a (len(Ks), len(Ls)) map by depth: "K = 4, 5 at L = 2; ...".

    Returns "none" for an empty mask. Used to put the cells of the Theorem-1 maps into prose.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (len(Ks), len(Ls)):
        raise ValueError(f"mask.shape={mask.shape} is not allowed: must be ({len(Ks)}, {len(Ls)})")
    parts = []
    for j, L in enumerate(Ls):
        ks = [str(K) for i, K in enumerate(Ks) if mask[i, j]]
        if ks:
            parts.append(f"K = {', '.join(ks)} at L = {L}")
    return "; ".join(parts) if parts else "none"
