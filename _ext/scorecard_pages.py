"""Sphinx extension: the scorecard page and the intro's summary are rebuilt from the records.

The chapters write their verdicts to records while the book executes them (``dufm.scorecard``);
Sphinx reads pages in name order, so every chapter (``chapters/0*``, ``chapters/1*``) is executed
before ``chapters/scorecard`` and ``intro`` are read. Both pages are marked outdated on every build,
so a warm build shows the same scorecard as a cold one, and the intro's ``{{ scorecard_counts }}``
is replaced by the summary line of the records (``$DUFM_RECORDS``, else ``_build/records``).
"""

import os

from dufm.scorecard_page import book_badges

PAGES = ("intro", "chapters/scorecard")
TOKEN = "{{ scorecard_counts }}"


def _always_outdated(app, env, added, changed, removed):
    return [page for page in PAGES if page in env.found_docs]


def _summary(app, docname, source):
    if docname == "intro" and TOKEN in source[0]:
        line = book_badges(app.srcdir, os.environ.get("DUFM_RECORDS") or None)
        source[0] = source[0].replace(TOKEN, line)


def setup(app):
    # Chapters executed by this build show no progress frames (dufm.progress): kernels inherit it.
    os.environ["DUFM_PROGRESS"] = "0"
    app.connect("env-get-outdated", _always_outdated)
    app.connect("source-read", _summary)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
