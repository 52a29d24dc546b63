"""Sphinx extension: load MathJax on every page, not only on pages with their own equations.

A chapter title with math (``$q_K$``) appears in every page's navigation; without this, pages
without equations of their own (the bibliography) would show it as raw TeX.
"""


def setup(app):
    app.set_html_assets_policy("always")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
