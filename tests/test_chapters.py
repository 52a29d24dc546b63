"""Every chapter listed in _toc.yml, executed through papermill with its ``ci`` parameter set.

The executed notebooks land in ``_build/ci-runs/`` where ``test_book.py`` picks them up. A new
chapter is tested as soon as it is in _toc.yml (it needs a ``ci`` key in
``chapters/params/<stem>.yml``).
"""

import ast
import importlib
import inspect
import re
import time
from pathlib import Path

import jupytext
import pytest
import torch

from dufm.run import (
    ChapterError,
    ParameterRejected,
    allowed_parameters,
    check_parameters,
    execute_chapter,
    parameter_set,
    toc_chapters,
)

CHAPTERS = toc_chapters(Path(__file__).resolve().parents[1])


@pytest.mark.chapters
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_runs_with_ci_parameters(chapter, ci_runs_dir, record_property):
    (ci_runs_dir / f"{chapter.stem}.ipynb").unlink(missing_ok=True)  # no stale result for the book
    start = time.perf_counter()
    try:
        execute_chapter(chapter, parameter_set(chapter, "ci"), ci_runs_dir, parameter_set_name="ci")
    except (ChapterError, ValueError, FileNotFoundError) as err:
        failure = str(err)  # reported below, outside the except block: no chained traceback
    else:
        record_property("seconds", round(time.perf_counter() - start, 1))
        return
    pytest.fail(failure, pytrace=False)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
@pytest.mark.parametrize("set_name", ["ci", "paper"])
def test_every_chapter_has_ci_and_paper_sets_of_its_own_parameters(chapter, set_name):
    values = parameter_set(chapter, set_name)
    assert values, f"{chapter.stem}: the {set_name} set is empty"
    nb = jupytext.read(chapter)
    check_parameters(chapter.stem, nb, values)  # raises on a name the chapter does not have
    defaults = allowed_parameters(nb)
    for name, value in values.items():
        default = ast.literal_eval(defaults[name]["default"])
        kind = (int, float) if isinstance(default, float) else type(default)
        assert isinstance(value, kind), (
            f"{chapter.stem} {set_name}: {name}={value!r} but the default is {default!r}"
        )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_papermill_reads_every_assignment_of_the_parameters_cell(chapter):
    nb = jupytext.read(chapter)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assigned = re.findall(r"^([A-Za-z_]\w*) = ", cell.source, flags=re.MULTILINE)
    unread = sorted(set(assigned) - set(allowed_parameters(nb)))
    assert not unread, f"{chapter.stem}: papermill cannot parse {unread} (an '=' in a comment?)"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_every_chapter_takes_the_device_that_the_runner_passes_to_all(chapter):
    assert "device" in allowed_parameters(jupytext.read(chapter)), (
        f"{chapter.stem} has no 'device' parameter: `python -m dufm.run --device cuda` would fail"
    )


@pytest.mark.chapters
@pytest.mark.parametrize(
    ("stem", "name", "value", "message"),
    [
        ("05_dnc_prevalence", "runs_per_point", 0, "runs_per_point=0 is not allowed"),
        ("06_flat_attractive", "bisection_steps", 0, "bisection_steps=0 is not allowed"),
        ("07_landscape_dimension", "Ks", [4, 5], "Ks\\[1\\]=5 is not allowed"),
        ("07_landscape_dimension", "Ks", 4, "Ks=4 is not allowed: must be a list"),
        ("06_flat_attractive", "lam_exponents", 3, "lam_exponents=3 is not allowed"),
        ("05_dnc_prevalence", "widths", 40, "widths=40 is not allowed"),
        ("04_optimal_structure", "lam_ii_power", -0.5, "lam_ii_power=-0.5 is not allowed"),
        ("03_rank_ordering", "search_steps", 100.0, "search_steps=100.0 is not allowed"),
        ("02_dnc_not_optimal", "seeds", [0], "seeds=\\[0\\] is not allowed: one seed per"),
        ("01_deep_ufm", "init_scales", [0.1, -1.0], "init_scales\\[1\\]=-1.0 is not allowed"),
    ],
)
def test_a_bad_parameter_stops_the_chapter_with_its_name(stem, name, value, message, tmp_path):
    (chapter,) = [c for c in CHAPTERS if c.stem == stem]
    with pytest.raises(ParameterRejected, match=message):  # in the cell after `parameters`
        execute_chapter(chapter, {**parameter_set(chapter, "ci"), name: value}, tmp_path)
    assert not (tmp_path / f"{stem}.ipynb").exists()  # no result written for a failed run


# Parameters a page takes but never uses (so that `--device` applies to every page).
UNUSED_PARAMETERS = {"scorecard": ("device",), "status": ("device",)}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_the_cell_after_parameters_checks_every_parameter_by_name(chapter):
    nb = jupytext.read(chapter)
    (index,) = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    check = nb.cells[index + 1]
    assert check.cell_type == "code", f"{chapter.stem}: no code cell after the parameters cell"
    text = check.source
    # A chapter may check its parameters with one library call (chapter 8): read that function.
    if re.search(r"\bcheck_chapter_parameters\(", text):
        source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        imports = re.findall(r"from (dufm[\w.]*) import (\([^)]*\)|[^\n]*)", source)
        found = [mod for mod, names in imports if "check_chapter_parameters" in names]
        module = importlib.import_module(found[0] if found else "dufm.theory")
        text += inspect.getsource(module.check_chapter_parameters)
    unchecked = [
        name
        for name in allowed_parameters(nb)
        if not re.search(rf"\b{name}\b", text)
        and name not in UNUSED_PARAMETERS.get(chapter.stem, ())
    ]
    assert not unchecked, f"{chapter.stem}: the cell after `parameters` never names {unchecked}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
@pytest.mark.parametrize("set_name", ["book", "ci", "paper"])
def test_every_parameter_set_passes_the_chapters_own_check(chapter, set_name, monkeypatch):
    """The cells up to the check cell (imports, parameters, the set's values, the check) run
    in this process: a set the chapter would reject fails here, in seconds."""
    nb = jupytext.read(chapter)
    (index,) = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    cells = [c.source for c in nb.cells[: index + 2] if c.cell_type == "code"]
    namespace: dict = {}
    threads = torch.get_num_threads()
    monkeypatch.chdir(chapter.parent)
    try:
        for source in cells[:-1]:
            exec(compile(source, str(chapter), "exec"), namespace)
        namespace.update(parameter_set(chapter, set_name))
        exec(compile(cells[-1], str(chapter), "exec"), namespace)
    finally:
        torch.set_num_threads(threads)  # the check cell sets the chapter's thread count
