"""Sphinx extension: each executed chapter can be downloaded as ``.ipynb`` beside its ``.md``.

myst-nb keeps the executed notebook of every page in ``<build>/jupyter_execute``; this copies it
to ``_sources/<page>.ipynb`` of the HTML output and sets ``ipynb_source``, which the book theme's
download button offers as ".ipynb" (outputs included).
"""

import shutil
from pathlib import Path


def _ipynb_source(app, pagename, templatename, context, doctree):
    if app.builder.format != "html":
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.is_file():
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def setup(app):
    app.connect("html-page-context", _ipynb_source, priority=500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
