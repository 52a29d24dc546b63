"""Every kind of bad input a user tries, with the message it gets (README, "Reliability").

Runner rows: ``python -m dufm.run`` ends with exactly one ``error:`` line, exit status 2 and no
traceback, and the output folder, which holds an earlier good result, is byte-for-byte unchanged
(no new file, temporary or partial). Library rows: a ``ValueError`` that names the argument.
"""

import math
import re
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest
import torch

from dufm import run
from dufm.losses import full_loss, mean_cross_entropy, reduced_loss, schatten_regulariser
from dufm.structures import dnc_logits, factorize
from dufm.sweep import run_sweep
from dufm.trainer import RunConfig, init_params, make_runs, train
from dufm.validation import check_device, check_int_list

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
CHECK = "if a < 1:\n    raise ValueError(f'a={a!r} is not allowed: must be an integer >= 1')"


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A chapter ``ch`` (parameters a, b; its next cell checks a), its params file, and an output
    folder holding an earlier good result."""
    cells = [
        nbformat.v4.new_markdown_cell("# ch"),
        nbformat.v4.new_code_cell("a = 1\nb = 'x'\n", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(CHECK),
        nbformat.v4.new_code_cell("print(a, b)"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})
    jupytext.write(nb, tmp_path / "ch.md", fmt="md:myst")
    jupytext.write(nb, tmp_path / "other.md", fmt="md:myst")
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "ch.yml").write_text("ci:\n  a: 2\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "ch.ipynb").write_text('{"an earlier": "good result"}')
    (tmp_path / "afile").write_text("x")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def params_file(text: str, name: str = "p.yml"):
    """A parameter file with ``text`` (written in the fixture's folder, the cwd)."""
    Path(name).write_text(text)
    return ["--params", name]


# (kind of bad input, argv after the chapter "ch.md" (a callable: built in the test's folder),
#  the message of the one error line (a regular expression))
RUNNER = [
    (
        "unknown parameter name",
        lambda: ["-p", "zeta", "1"],
        r"chapter ch: unknown parameter\(s\) 'zeta'; allowed: a, b",
    ),
    (
        "unparseable -p value",
        lambda: ["-p", "a", "[3, 4"],
        r"-p a '\[3, 4' is not a valid YAML value: line 1, column 6: expected ',' or '\]'",
    ),
    (
        "parameter file: unclosed bracket",
        lambda: params_file("a: [1, 2\n"),
        r"p.yml is not valid YAML: line 2, column 1: expected ',' or '\]'",
    ),
    (
        "parameter file: a tab",
        lambda: params_file("a: 1\n\tb: 2\n"),
        r"p.yml is not valid YAML: line 2, column 1: found character '\\t'",
    ),
    (
        "parameter file: empty",
        lambda: params_file("# nothing yet\n"),
        r"p.yml is empty: give parameters \(steps: 5000\)",
    ),
    (
        "parameter file: a list, not a mapping",
        lambda: params_file("- a\n- 2\n"),
        r"p.yml: expected a mapping of parameters, got list",
    ),
    (
        "parameter file: misspelt chapter key",
        lambda: params_file("ch: {}\nch_: {a: 2}\n"),
        r"p.yml: unknown chapter\(s\) 'ch_' .*chapters: ch, other",
    ),
    (
        "parameter file: no entry for the chapter",
        lambda: params_file("other: {a: 2}\n"),
        r"p.yml has no entry for chapter ch \(it has: other\); add 'ch: \{\}'",
    ),
    (
        "parameter file: missing",
        lambda: ["--params", "nope.yml"],
        r"parameter file not found: nope.yml",
    ),
    (
        "parameter file: not YAML by name",
        lambda: ["--params", "p.json"],
        r"unknown parameter set 'p.json': use one of ci, book, paper or a path to a .yml file",
    ),
    (
        "parameter set: unknown name",
        lambda: ["--params", "fast"],
        r"unknown parameter set 'fast': use one of ci, book, paper",
    ),
    (
        "parameter set: its key missing",
        lambda: ["--params", "paper"],
        r"params/ch.yml has no 'paper' key \(found: ci\)",
    ),
    (
        "unknown name inside a parameter set",
        lambda: params_file("c: 3\n"),
        r"chapter ch: unknown parameter\(s\) 'c'; allowed: a, b",
    ),
    (
        "--out: its parent is a file",
        lambda: ["--out", "afile/runs"],
        r"--out afile/runs cannot be created: .*afile is a file, not a folder",
    ),
    (
        "--out: an existing file",
        lambda: ["--out", "afile"],
        r"--out afile is not allowed: it is an existing file, not a folder",
    ),
    (
        "--kernel: not installed",
        lambda: ["--kernel", "nope"],
        r"--kernel 'nope' is not allowed: no such Jupyter kernel here \(installed: .*python3",
    ),
    (
        "a value the chapter's check rejects",
        lambda: ["-p", "a", "0"],
        r"chapter ch: parameter rejected: a=0 is not allowed: must be an integer >= 1",
    ),
    (
        "a YAML 1.1 octal (1.2: decimal)",
        lambda: ["-p", "a", "-010"],
        r"chapter ch: parameter rejected: a=-10 is not allowed",
    ),
]


@pytest.mark.parametrize(("kind", "argv", "message"), RUNNER, ids=[r[0] for r in RUNNER])
def test_runner_bad_input_is_one_error_line_status_2_and_leaves_out_as_it_was(
    place, capsys, kind, argv, message
):
    args = argv()
    out = "out" if "--out" not in args else None
    before = {p.name: p.read_bytes() for p in (place / "out").iterdir()}
    status = run.main(["ch.md", *args, *(["--out", out] if out else [])])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 2, err
    assert len(errors) == 1 and errors[0].startswith("error: "), err
    assert re.search(message, errors[0]), errors[0]
    assert "Traceback" not in err
    after = {p.name: p.read_bytes() for p in (place / "out").iterdir()}
    assert after == before  # nothing added (no temporary or partial file), the result intact


def test_runner_other_usage_errors(place, capsys):
    status = run.main(["nope.md", "--params", "ci", "--out", "out"])
    assert status == 2
    assert "error: chapter file not found: nope.md" in capsys.readouterr().err
    Path("notes.txt").write_text("x")
    assert run.main(["notes.txt", "--out", "out"]) == 2
    assert "must be a .md or .ipynb notebook" in capsys.readouterr().err
    assert run.main(["--out", "out"]) == 2  # no chapter given and no _toc.yml here
    assert "error: no _toc.yml in " in capsys.readouterr().err
    Path("_toc.yml").write_text("root: intro\nparts: [\n")
    assert run.main(["--out", "out"]) == 2
    assert "_toc.yml is not valid YAML: line 3, column 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # argparse: usage line, status 2
        run.main(["ch.md", "-p", "a"])
    assert info.value.code == 2
    assert "expected 2 arguments" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        run.main(["ch.md", "--stepz", "3"])
    assert info.value.code == 2
    assert "unrecognized arguments: --stepz" in capsys.readouterr().err
    assert [p.name for p in Path("out").iterdir()] == ["ch.ipynb"]
    (Path("out2") / "ch.ipynb").mkdir(parents=True)  # a folder where the result would go
    assert run.main(["ch.md", "--out", "out2"]) == 2
    assert "out2/ch.ipynb is a folder, not a notebook" in capsys.readouterr().err
    assert [p.name for p in Path("out2").iterdir()] == ["ch.ipynb"]


# (kind of bad input, the call, the start of the ValueError's message)
Z_OK = dnc_logits(3, 2, 1.0)


def _with(Z, index, value):
    Z = Z.clone()
    Z[index] = value
    return Z


def _bad_params():
    params = factorize(Z_OK, 2, 4)
    params[1] = torch.zeros(4, 5, dtype=torch.float64)
    return params


def _nan_start():
    params = init_params(3, 2, 2, make_runs([0], d=4, init_scale=1.0, lam=0.1, lr=0.1))
    params[0][0, 0, 0] = math.nan
    return params


TRAIN = dict(seeds=[0], steps=2, progress=False)
LIBRARY = [
    (
        "Z with an infinite entry",
        lambda: reduced_loss(_with(Z_OK, (0, 0), math.inf), 0.1, 2),
        r"Z is not allowed: 1 of its 18 entries are NaN or infinite",
    ),
    (
        "Z with a NaN",
        lambda: factorize(_with(Z_OK, (2, 5), math.nan), 2, 4),
        r"Z is not allowed: 1 of its 18 entries are NaN or infinite \(first at index \(2, 5\)",
    ),
    (
        "complex Z",
        lambda: reduced_loss(Z_OK.to(torch.complex128), 0.1, 2),
        r"Z.dtype=torch.complex128 is not allowed: must be a real",
    ),
    (
        "Z columns not a multiple of K",
        lambda: mean_cross_entropy(torch.zeros(3, 7)),
        r"Z.shape=\(3, 7\) is not allowed: the column count must be a positive multiple of K",
    ),
    (
        "parameters that do not chain",
        lambda: full_loss(_bad_params(), 0.1),
        r"params\[1\].shape=\(4, 5\) is not allowed after params\[0\].shape=\(4, 6\)",
    ),
    (
        "negative weight decay",
        lambda: schatten_regulariser(Z_OK, -0.1, 2),
        r"lam=-0.1 is not allowed: must be a finite number > 0",
    ),
    (
        "depth below one",
        lambda: schatten_regulariser(Z_OK, 0.1, 0),
        r"L=0 is not allowed: must be an integer >= 1",
    ),
    (
        "weight decay as a string",
        lambda: reduced_loss(Z_OK, "0.1", 2),
        r"lam='0.1' is not allowed: must be a finite number > 0",
    ),
    (
        "a non-finite starting point",
        lambda: train(3, 2, 2, 4, 0.1, params=_nan_start(), **TRAIN),
        r"params\[0\] is not allowed: 1 of its 24 entries are NaN or infinite",
    ),
    (
        "a number where a list is needed",
        lambda: check_int_list("Ks", 4, 3),
        r"Ks=4 is not allowed: must be a list of integers >= 3",
    ),
    (
        "no seeds",
        lambda: train(3, 2, 2, 4, 0.1, seeds=[], steps=2, progress=False),
        r"seeds=\[\] is not allowed: give at least one seed",
    ),
    (
        "half precision",
        lambda: train(3, 2, 2, 4, 0.1, dtype="float16", **TRAIN),
        r"dtype='float16' is not allowed: must be 'float32' or 'float64'",
    ),
    (
        "an unknown device",
        lambda: check_device("gpu"),
        r"device='gpu' is not allowed: must be a torch device name",
    ),
    (
        "a width below K in a sweep",
        lambda: run_sweep([RunConfig(0, 2, 0.1)], "unused", K=3, n=2, L=2),
        r"configs\[0\].d=2 is not allowed: the width must be at least K=3",
    ),
    (
        "a NumPy bool as a size",
        lambda: train(np.bool_(True), 2, 2, 4, 0.1, **TRAIN),
        r"K=np.True_ is not allowed: must be an integer >= 2",
    ),
    (
        "an unknown kernels choice",
        lambda: train(3, 2, 2, 4, 0.1, kernels="fast", **TRAIN),
        r"kernels='fast' is not allowed: must be one of \('auto', 'mkl', 'torch'\)",
    ),
    (
        "the MKL kernels for the ReLU model",
        lambda: train(3, 2, 2, 4, 0.1, activation="relu", kernels="mkl", **TRAIN),
        r"kernels='mkl' is not allowed with device='cpu', activation='relu', compile=False: "
        r"the MKL kernels serve the linear model on the CPU, uncompiled",
    ),
]
if not torch.backends.mps.is_available():
    LIBRARY.append(
        ("an unavailable accelerator", lambda: train(3, 2, 2, 4, 0.1, device="mps", **TRAIN),
         r"device='mps' is not allowed: MPS is not available on this machine")
    )  # fmt: skip


@pytest.mark.parametrize(("kind", "call", "message"), LIBRARY, ids=[r[0] for r in LIBRARY])
def test_library_bad_input_is_a_value_error_naming_the_argument(
    tmp_path, monkeypatch, kind, call, message
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):
        call()
    assert list(tmp_path.iterdir()) == []  # nothing written


def readme_table() -> dict:
    """{bad input: message} of the table in README.md, "Reliability" (backticks dropped)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("### Reliability", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 4 and cells[0] not in ("Bad input", "---"):
            rows[cells[0].replace("`", "")] = cells[3].strip("`").replace("\\|", "|")
    return rows


def test_the_readme_table_shows_the_messages_the_tests_check():
    rows = readme_table()
    assert len(rows) >= 25
    for kind, _, message in RUNNER + LIBRARY:
        assert kind.replace("`", "") in rows, f"README lacks the row {kind!r}"
        shown = rows[kind.replace("`", "")].removeprefix("error: ")
        assert re.search(message, shown), f"README row {kind!r}: {shown!r} !~ {message!r}"
