"""Unit tests of the chapter runner ``dufm.run`` on tiny throwaway notebooks."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest

from dufm import book, run
from dufm.run import (
    ChapterError,
    execute_chapter,
    parameter_set,
    parse_value,
    toc_chapters,
    toc_documents,
)

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def write_chapter(folder: Path, stem: str, body: str, params: str = "a = 1\nb = 'x'\n") -> Path:
    """A MyST chapter with a ``parameters`` cell and one body cell."""
    cells = [
        nbformat.v4.new_markdown_cell(f"# {stem}"),
        nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})
    path = folder / f"{stem}.md"
    jupytext.write(nb, path, fmt="md:myst")
    return path


def outputs(path: Path) -> str:
    """All stream text printed by an executed notebook."""
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_unknown_parameter_names_chapter_and_allowed_names(tmp_path):
    chapter = write_chapter(tmp_path, "ch", "print(a)")
    with pytest.raises(ValueError, match=r"chapter ch: unknown parameter\(s\) 'c'; allowed: a, b"):
        execute_chapter(chapter, {"c": 3}, tmp_path / "out")
    assert not (tmp_path / "out" / "ch.ipynb").exists()


def test_missing_chapter_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="chapter file not found: .*nope.md"):
        execute_chapter(tmp_path / "nope.md", {}, tmp_path)


def test_overrides_reach_the_notebook_and_cwd_is_the_chapter_folder(tmp_path):
    (tmp_path / "data.txt").write_text("here")
    chapter = write_chapter(tmp_path, "ch", "print(a * 2, b, open('data.txt').read())")
    out = execute_chapter(chapter, {"a": 21, "b": "cuda"}, tmp_path / "out")
    assert out == tmp_path / "out" / "ch.ipynb"
    assert "42 cuda here" in outputs(out)
    assert [p.name for p in out.parent.iterdir()] == ["ch.ipynb"]  # no temporary file left


def test_failing_rerun_raises_chapter_error_and_keeps_the_good_result(tmp_path):
    out_dir = tmp_path / "out"
    chapter = write_chapter(tmp_path, "ch", "assert a == 1, f'a is {a}'\nprint('good run')")
    good = execute_chapter(chapter, {}, out_dir)
    before = good.read_bytes()
    with pytest.raises(ChapterError) as info:
        execute_chapter(chapter, {"a": 5}, out_dir)
    err = info.value
    assert (err.chapter, err.ename, err.evalue) == ("ch", "AssertionError", "a is 5")
    message = str(err)
    assert "chapter ch" in message and "AssertionError: a is 5" in message
    assert "assert a == 1" in message  # the failing cell's source
    assert "Traceback" not in message and "papermill" not in message
    assert good.read_bytes() == before  # the earlier good notebook is intact
    assert err.partial == out_dir / "ch.failed.ipynb" and err.partial.is_file()
    assert sorted(p.name for p in out_dir.iterdir()) == ["ch.failed.ipynb", "ch.ipynb"]


RECORDS = """from dufm.scorecard import record
record("ch", "Lemma 1", verdict="reproduced", measured=f"run with a = {a}",
       setting="reduced", facts={"a": a})
assert a == 1, f"a is {a}"
"""


def test_a_chapter_that_fails_after_recording_keeps_the_earlier_records(tmp_path, monkeypatch):
    monkeypatch.delenv("DUFM_RECORDS", raising=False)
    chapter = write_chapter(tmp_path, "ch", RECORDS)
    out_dir = tmp_path / "out"
    execute_chapter(chapter, {}, out_dir)
    kept = out_dir / "records" / "ch.json"
    before = kept.read_bytes()
    assert "run with a = 1" in before.decode()
    with pytest.raises(ChapterError):
        execute_chapter(chapter, {"a": 2}, out_dir)
    assert kept.read_bytes() == before  # the failed run's record never replaced it
    assert sorted(p.name for p in out_dir.iterdir()) == ["ch.failed.ipynb", "ch.ipynb", "records"]
    assert [p.name for p in (out_dir / "records").iterdir()] == ["ch.json"]


def test_records_go_to_dufm_records_when_it_is_set(tmp_path, monkeypatch):
    monkeypatch.setenv("DUFM_RECORDS", str(tmp_path / "mine"))
    chapter = write_chapter(tmp_path, "ch", RECORDS)
    execute_chapter(chapter, {}, tmp_path / "out")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["ch.json"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ch.ipynb"]
    assert os.environ["DUFM_RECORDS"] == str(tmp_path / "mine")


def test_records_name_the_parameter_set_the_runner_ran(tmp_path, monkeypatch):
    monkeypatch.delenv("DUFM_RECORDS", raising=False)
    monkeypatch.delenv("DUFM_PARAMETER_SET", raising=False)
    chapter = write_chapter(tmp_path, "ch", RECORDS)
    execute_chapter(chapter, {}, tmp_path / "out", parameter_set_name="paper")
    entry = json.loads((tmp_path / "out" / "records" / "ch.json").read_text())
    assert entry["results"]["Lemma 1"]["parameter_set"] == "paper"
    assert "DUFM_PARAMETER_SET" not in os.environ
    with pytest.raises(ValueError, match="parameter_set_name='mine' is not allowed"):
        execute_chapter(chapter, {}, tmp_path / "out", parameter_set_name="mine")


@pytest.mark.parametrize(
    "params, overrides, name",
    [
        ("ci", {}, "ci"),
        ("paper", {"device": "cuda", "scheduler": "local"}, "paper"),
        ("paper", {"steps": 10}, "custom"),
        ("my.yml", {}, "custom"),
        ("book", {}, "book"),
    ],
)
def test_the_set_name_is_custom_once_a_value_changes_what_is_measured(params, overrides, name):
    assert run._set_name(params, overrides) == name


def test_interrupted_run_leaves_no_half_written_file(tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "ch.ipynb").write_text("good")
    chapter = write_chapter(tmp_path, "ch", "print(a)")

    def interrupted(nb, output_path, **kwargs):
        Path(output_path).write_text('{"half": ')
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    with pytest.raises(KeyboardInterrupt):
        execute_chapter(chapter, {}, out_dir)
    assert [p.name for p in out_dir.iterdir()] == ["ch.ipynb"]
    assert (out_dir / "ch.ipynb").read_text() == "good"


def test_parameter_sets_from_the_chapter_params_file(tmp_path):
    chapter = write_chapter(tmp_path, "ch", "pass")
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "ch.yml").write_text("ci:\n  a: 2\n  lr: 1e-3\npaper:\n  a: 3\n")
    assert parameter_set(chapter, "ci") == {"a": 2, "lr": 1e-3}
    assert parameter_set(chapter, "paper") == {"a": 3}
    assert parameter_set(chapter, "book") == {}


def test_book_set_needs_no_params_file_but_ci_does(tmp_path):
    chapter = write_chapter(tmp_path, "ch", "pass")
    assert parameter_set(chapter, "book") == {}
    with pytest.raises(FileNotFoundError, match="'ci' of ch"):
        parameter_set(chapter, "ci")


def test_parameter_file_flat_and_keyed_by_chapter(tmp_path):
    chapter = write_chapter(tmp_path, "ch", "pass")
    write_chapter(tmp_path, "other", "pass")
    flat = tmp_path / "flat.yml"
    flat.write_text("a: 7\nb: [1, 2]\n")
    keyed = tmp_path / "keyed.yaml"
    keyed.write_text("ch:\n  a: 8\nother:\n  a: 9\n")
    assert parameter_set(chapter, str(flat)) == {"a": 7, "b": [1, 2]}
    assert parameter_set(chapter, str(keyed)) == {"a": 8}
    keyed.write_text("ch: {}\nother:\n  a: 9\n")
    assert parameter_set(chapter, str(keyed)) == {}


def test_keyed_file_without_the_chapter_or_with_an_unknown_chapter_is_an_error(tmp_path):
    chapter = write_chapter(tmp_path, "ch", "pass")
    write_chapter(tmp_path, "other", "pass")
    keyed = tmp_path / "keyed.yml"
    keyed.write_text("other:\n  a: 9\n")
    with pytest.raises(ValueError, match=r"no entry for chapter ch .*add 'ch: \{\}'"):
        parameter_set(chapter, str(keyed))
    keyed.write_text("ch:\n  a: 9\nch_typo:\n  a: 1\n")
    with pytest.raises(ValueError, match=r"unknown chapter\(s\) 'ch_typo'.*chapters: ch, other"):
        parameter_set(chapter, str(keyed))


def test_keyed_file_keys_are_checked_against_the_chapters_of_the_toc():
    root = Path(__file__).resolve().parents[1]
    chapter = root / "chapters" / "01_deep_ufm.md"
    with pytest.raises(ValueError, match=r"unknown chapter\(s\) '01_deep_ufn'.*01_deep_ufm, 02"):
        book._select({"01_deep_ufn": {"steps": 3}}, chapter, "my.yml")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_parameter_file_is_an_error(tmp_path, text):
    chapter = write_chapter(tmp_path, "ch", "pass")
    (tmp_path / "p.yml").write_text(text)
    with pytest.raises(ValueError, match=r"p.yml is empty"):
        parameter_set(chapter, str(tmp_path / "p.yml"))


@pytest.mark.parametrize(
    ("text", "where"),
    [("a: [1, 2\n", "line 2, column 1"), ("a: 1\n\tb: 2\n", "line 2, column 1")],
)
def test_malformed_parameter_file_names_the_file_and_the_line(tmp_path, text, where):
    chapter = write_chapter(tmp_path, "ch", "pass")
    (tmp_path / "p.yml").write_text(text)
    with pytest.raises(ValueError, match=rf"p.yml is not valid YAML: {where}"):
        parameter_set(chapter, str(tmp_path / "p.yml"))
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "ch.yml").write_text("ci:\n  a: [1\n")
    with pytest.raises(ValueError, match=r"params/ch.yml is not valid YAML: line \d+"):
        parameter_set(chapter, "ci")


def test_unknown_parameter_set_name_lists_the_sets(tmp_path):
    chapter = write_chapter(tmp_path, "ch", "pass")
    with pytest.raises(ValueError, match="unknown parameter set 'fast'.*ci, book, paper"):
        parameter_set(chapter, "fast")
    with pytest.raises(FileNotFoundError, match="parameter file not found"):
        parameter_set(chapter, str(tmp_path / "missing.yml"))


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("1e-3", 1e-3), ("0.5", 0.5), ("true", True), ("cuda", "cuda"), ("[1, 2]", [1, 2])],
)
def test_parse_value_reads_yaml_scalars(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("010", 10),  # YAML 1.1: 8 (octal)
        ("08", 8),  # YAML 1.1: 8.0
        ("1:30", "1:30"),  # YAML 1.1: 90 (base 60)
        ("yes", "yes"),  # YAML 1.1: True
        ("off", "off"),
        ("0o17", 15),
        ("0x1f", 31),
        ("-2", -2),
        ("1_000", "1_000"),  # YAML 1.1: 1000
        ("2026-01-02", "2026-01-02"),  # YAML 1.1: a date
        (".inf", float("inf")),
        ("-.Inf", -float("inf")),
        ("inf", "inf"),  # a string: the chapter's check then rejects it by name
        ("[010, 1e-3, True]", [10, 1e-3, True]),
    ],
)
def test_parse_value_follows_the_yaml_1_2_core_schema(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_parse_value_reads_yaml_nan():
    assert math.isnan(parse_value(".NaN")) and math.isnan(parse_value(".nan"))


def test_unparseable_value_names_the_parameter():
    with pytest.raises(ValueError, match=r"-p Ks '\[3, 4' is not a valid YAML value"):
        parse_value("[3, 4", "Ks")


def test_toc_chapters_lists_kernel_pages_in_order(tmp_path):
    (tmp_path / "chapters").mkdir()
    write_chapter(tmp_path / "chapters", "02_b", "pass")
    write_chapter(tmp_path / "chapters", "01_a", "pass")
    (tmp_path / "intro.md").write_text("# Intro\n")
    (tmp_path / "bibliography.md").write_text("# Bibliography\n")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: C\n    chapters:\n"
        "      - file: chapters/02_b\n      - file: chapters/01_a\n"
        "  - caption: R\n    chapters:\n      - file: bibliography\n"
    )
    assert [p.stem for p in toc_chapters(tmp_path)] == ["02_b", "01_a"]
    assert toc_documents(tmp_path) == ["intro", "chapters/02_b", "chapters/01_a", "bibliography"]
    (tmp_path / "chapters" / "01_a.md").unlink()
    with pytest.raises(FileNotFoundError, match="chapters/01_a"):
        toc_chapters(tmp_path)


def test_cli_rejects_an_unknown_name_before_running_anything(tmp_path, capsys):
    chapter = write_chapter(tmp_path, "ch", "pass")
    status = run.main([str(chapter), "-p", "zeta", "1", "--out", str(tmp_path / "out")])
    assert status == 2
    assert "chapter ch: unknown parameter(s) 'zeta'; allowed: a, b" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_device_shorthand_and_params_file(tmp_path, capsys):
    chapter = write_chapter(tmp_path, "ch", "print(a, device)", params="a = 1\ndevice = 'cpu'\n")
    (tmp_path / "p.yml").write_text(json.dumps({"a": 4}))
    argv = [str(chapter), "--params", str(tmp_path / "p.yml"), "--device", "meta"]
    assert run.main([*argv, "--out", str(tmp_path / "out")]) == 0
    assert "4 meta" in outputs(tmp_path / "out" / "ch.ipynb")


SLEEPY = "import time\nprint('started', flush=True)\ntime.sleep(60)"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_run_keeps_the_earlier_result_and_leaves_no_file(tmp_path, signum):
    chapter = write_chapter(tmp_path, "ch", SLEEPY)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "ch.ipynb").write_text("good")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dufm.run", str(chapter), "--out", str(out_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # the runner's own handling is tested, not an environment that ignores SIGINT (a job
        # started in the background inherits an ignored SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not list(out_dir.glob(".ch.*.tmp.ipynb")) and time.monotonic() < deadline:
        time.sleep(0.2)  # the temporary notebook appears once the kernel runs
    time.sleep(1.0)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert f"interrupted ({signal.Signals(signum).name}) in ch; earlier results kept" in err
    assert "Traceback" not in err
    assert [p.name for p in out_dir.iterdir()] == ["ch.ipynb"]
    assert (out_dir / "ch.ipynb").read_text() == "good"


def test_temporary_files_of_killed_runs_are_cleared_by_the_next_run(tmp_path):
    chapter = write_chapter(tmp_path, "ch", "print(a)")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its id now names no process
    stale = [out_dir / f".ch.{dead.pid}.abc.tmp.ipynb", out_dir / ".ch.x7q2k.tmp.ipynb"]
    live = out_dir / f".ch.{os.getppid()}.def.tmp.ipynb"  # a running writer's file stays
    other = out_dir / f".other.{dead.pid}.abc.tmp.ipynb"  # another chapter's stays
    for path in [*stale, live, other]:
        path.write_text("{")
    stale_records = out_dir / f".ch.{dead.pid}.records.tmp"  # a killed run's records folder
    stale_records.mkdir()
    (stale_records / "ch.json").write_text("{")
    execute_chapter(chapter, {}, out_dir)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(["ch.ipynb", live.name, other.name])


def test_a_run_prints_no_kernel_log_lines(tmp_path):
    chapter = write_chapter(tmp_path, "ch", "print(a)")
    proc = subprocess.run(
        [sys.executable, "-m", "dufm.run", str(chapter), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[IPKernelApp]" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr


CHECKED = "a = 1\nb = 'x'\n"
CHECK_CELL = "if a < 1:\n    raise ValueError(f'a={a!r} is not allowed: must be >= 1')"


def checked_chapter(folder: Path) -> Path:
    """A chapter whose cell after ``parameters`` checks ``a`` (as the book's chapters do)."""
    cells = [
        nbformat.v4.new_markdown_cell("# ch"),
        nbformat.v4.new_code_cell(CHECKED, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(CHECK_CELL),
        nbformat.v4.new_code_cell("assert a < 5, f'a is {a}'\nprint('ran', a)"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})
    path = folder / "ch.md"
    jupytext.write(nb, path, fmt="md:myst")
    return path


def test_a_value_the_chapter_rejects_is_a_usage_error_in_one_line(tmp_path, capsys):
    chapter = checked_chapter(tmp_path)
    out = tmp_path / "out"
    assert run.main([str(chapter), "--out", str(out)]) == 0
    before = (out / "ch.ipynb").read_bytes()
    capsys.readouterr()
    assert run.main([str(chapter), "-p", "a", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == ["error: chapter ch: parameter rejected: a=0 is not allowed: must be >= 1"], (
        err
    )
    assert "Traceback" not in err and "failing cell" not in err
    assert [p.name for p in out.iterdir()] == ["ch.ipynb"]  # no partial notebook kept
    assert (out / "ch.ipynb").read_bytes() == before
    # a failure after the check is a failed run (status 1) with its partial notebook
    assert run.main([str(chapter), "-p", "a", "7", "--out", str(out)]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["ch.failed.ipynb", "ch.ipynb"]
    assert (out / "ch.ipynb").read_bytes() == before


def test_debug_shows_the_traceback_and_the_default_does_not(tmp_path, capsys):
    chapter = write_chapter(tmp_path, "ch", "pass")
    (tmp_path / "p.yml").write_text("a: [1\n")
    argv = [str(chapter), "--params", str(tmp_path / "p.yml"), "--out", str(tmp_path / "o")]
    assert run.main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert run.main([*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "error: " in err


def test_missing_chapter_is_named_before_its_parameter_set(tmp_path, capsys):
    status = run.main([str(tmp_path / "99_nope.md"), "--params", "ci", "--out", str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err
    assert "error: chapter file not found: " in err and "99_nope.md" in err
    assert "set 'ci'" not in err


@pytest.mark.parametrize("case", ["parent_is_a_file", "is_a_file", "read_only"])
def test_an_out_folder_that_cannot_be_made_is_a_usage_error(tmp_path, capsys, case):
    chapter = write_chapter(tmp_path, "ch", "pass")
    (tmp_path / "file").write_text("x")
    out = {"parent_is_a_file": tmp_path / "file" / "runs", "is_a_file": tmp_path / "file"}.get(
        case, tmp_path / "ro" / "runs"
    )
    if case == "read_only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        (tmp_path / "ro").mkdir(mode=0o555)
    assert run.main([str(chapter), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and "Traceback" not in err


def test_a_second_run_of_the_same_chapter_into_the_same_folder_stops_naming_the_first(
    tmp_path, capsys
):
    chapter = write_chapter(tmp_path, "ch", "print(a)")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out_dir / ".ch.lock").write_text(f"{other.pid}\n")  # a live run holds the chapter
        with pytest.raises(ValueError, match=rf"another run of chapter ch .*process {other.pid}"):
            execute_chapter(chapter, {}, out_dir)
        assert run.main([str(chapter), "--out", str(out_dir)]) == 2
        err = capsys.readouterr().err
        [line] = [x for x in err.splitlines() if x.startswith("error:")]
        assert f"process {other.pid}" in line and "use another --out" in line
        assert not (out_dir / "ch.ipynb").exists()
    finally:
        other.kill()
        other.wait()
    execute_chapter(chapter, {}, out_dir)  # its process is gone: the lock is stale, and cleared
    assert sorted(p.name for p in out_dir.iterdir()) == ["ch.ipynb"]  # and no lock left


def test_a_partial_notebook_cut_short_is_not_kept_and_the_error_says_so(tmp_path, monkeypatch):
    chapter = write_chapter(tmp_path, "ch", "print(a)")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "ch.ipynb").write_text("good")

    def full_disk(nb, output_path, **kwargs):
        Path(output_path).write_text('{"cells": [{"cell_type": "code", "sou')  # cut short
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run.papermill, "execute_notebook", full_disk)
    with pytest.raises(ChapterError) as info:
        execute_chapter(chapter, {}, out_dir)
    message = str(info.value)
    assert "No space left on device" in message
    assert "no partial notebook kept: it was cut short while being written" in message
    assert "partial output" not in message
    assert sorted(p.name for p in out_dir.iterdir()) == ["ch.ipynb"]
    assert (out_dir / "ch.ipynb").read_text() == "good"


def test_a_partial_notebook_written_whole_is_kept(tmp_path):
    chapter = write_chapter(tmp_path, "ch", "raise RuntimeError('boom')")
    out_dir = tmp_path / "out"
    with pytest.raises(ChapterError, match="partial output: .*ch.failed.ipynb"):
        execute_chapter(chapter, {}, out_dir)
    nbformat.read(out_dir / "ch.failed.ipynb", as_version=4)  # valid JSON, a whole notebook


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--params", "book"], "--params book"),
        (["--params", "paper", "-p", "a", "2"], "--params paper -p a"),
    ],
)
def test_archive_keeps_the_paper_set_only(tmp_path, capsys, args, shown):
    chapter = write_chapter(tmp_path, "ch", "print(a)")
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "ch.yml").write_text("ci: {}\npaper: {a: 3}\n")
    status = run.main([str(chapter), "--archive", "--out", str(tmp_path / "out"), *args])
    assert status == 2
    err = capsys.readouterr().err
    assert f"error: --archive is not allowed with {shown}" in err
    assert "keeps runs of the paper set only" in err
    assert not (tmp_path / "out").exists()


ARCHIVED = """
from dufm.scorecard import record
record("01_deep_ufm", "Proposition 1", verdict="reproduced", measured=f"a = {a}",
       setting="paper", facts={"device": "cpu", "dtype": "float64", "settled": True})
"""


def test_archive_keeps_a_finished_paper_run_in_results_paper(tmp_path, monkeypatch, capsys):
    book = tmp_path / "book"
    (book / "chapters" / "params").mkdir(parents=True)
    (book / "intro.md").write_text("# intro\n")
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: chapters/01_deep_ufm\n"
        "  - file: chapters/scorecard\n"
    )
    write_chapter(book / "chapters", "01_deep_ufm", ARCHIVED)
    write_chapter(book / "chapters", "scorecard", "print('a page that checks no result')")
    (book / "chapters" / "params" / "01_deep_ufm.yml").write_text("ci: {}\npaper: {a: 3}\n")
    monkeypatch.chdir(book)
    assert run.main(["--params", "paper", "--archive", "--out", "runs"]) == 0
    kept = json.loads((book / "results/paper/records/01_deep_ufm.json").read_text())
    entry = kept["records"]["results"]["Proposition 1"]
    assert entry["measured"] == "a = 3" and entry["parameter_set"] == "paper"
    assert kept["run"]["device"] == "cpu" and kept["run"]["wall_s"] > 0
    index = (book / "results/paper/README.md").read_text()
    assert "| 01_deep_ufm |" in index and "Proposition 1: reproduced" in index
    err = capsys.readouterr().err
    assert "kept " in err and "== scorecard" not in err  # a page that checks no result is not run
    assert not (book / "results/paper/records/scorecard.json").exists()


def test_the_injected_parameters_cell_is_shown_as_the_chapters_own(tmp_path):
    cells = [
        nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters", "remove-cell"]}),
        nbformat.v4.new_code_cell("print(a)"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})
    jupytext.write(nb, tmp_path / "ch.md", fmt="md:myst")
    out = execute_chapter(tmp_path / "ch.md", {"a": 2}, tmp_path / "out")
    executed = nbformat.read(out, as_version=4)
    [injected] = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "remove-cell" in injected.metadata["tags"]


def test_a_page_run_by_the_runner_reads_the_records_of_the_finished_chapters(tmp_path):
    chapter = write_chapter(tmp_path, "ch", "import os\nprint(os.environ['DUFM_RECORDS_TARGET'])")
    out = execute_chapter(chapter, {}, tmp_path / "out")
    assert outputs(out).strip() == str((tmp_path / "out" / "records").resolve())
