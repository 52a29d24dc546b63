"""Unit tests of dufm.style: chapter cells formatted at 88 columns, none over 40 lines."""

from dufm import style

CHAPTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
mystnb:
  execution_mode: force
---

# A chapter

```{code-cell} ipython3
:tags: [hide-input]

x = {'a':1,   'b':2}
```

Text with `code` that stays.
"""


def test_formatting_changes_only_the_code_of_the_cells(tmp_path):
    path = tmp_path / "ch.md"
    path.write_text(CHAPTER)
    assert style.problems(path) == [
        "code cell 1 is not formatted (python -m dufm.style " + f"{path})"
    ]
    assert style.format_chapter(path) is True
    assert path.read_text() == CHAPTER.replace("x = {'a':1,   'b':2}", 'x = {"a": 1, "b": 2}')
    assert style.problems(path) == []
    assert style.format_chapter(path) is False


def test_long_cells_and_wide_lines_are_reported(tmp_path):
    path = tmp_path / "ch.md"
    body = "\n".join(f"y{i} = {i}" for i in range(41)) + "\nz = '" + "w" * 90 + "'"
    path.write_text(CHAPTER.replace("x = {'a':1,   'b':2}", body))
    found = style.problems(path, formatted=False)
    assert found == [
        "code cell 1 has 42 lines (at most 40)",
        "code cell 1, line 42: 96 columns (at most 88)",
    ]
    assert style.main(["--check", str(path)]) == 1


def test_a_parameter_line_papermill_cannot_read_is_reported(tmp_path):
    path = tmp_path / "ch.md"
    cell = ":tags: [parameters]\n\nd = 5  # width (d >= K)\nK = 3  # classes"
    path.write_text(CHAPTER.replace(":tags: [hide-input]\n\nx = {'a':1,   'b':2}", cell))
    assert style.problems(path, formatted=False) == [
        "code cell 1 (parameters), line 1: more than one '=' (papermill cannot read the line)"
    ]


def test_every_chapter_of_the_book_passes_the_style_check():
    from pathlib import Path

    chapters = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("*.md"))
    assert chapters
    found = [f"{path.name}: {p}" for path in chapters for p in style.problems(path)]
    assert not found, "\n".join(found[:20])
