"""Unit tests of dufm.progress: bars on terminals and in logs, none inside a book build."""

import nbformat

from dufm.progress import drop_progress_frames, progress_bar, progress_enabled


def test_a_bar_is_off_when_asked_or_inside_a_book_build(monkeypatch):
    monkeypatch.delenv("DUFM_PROGRESS", raising=False)
    assert progress_enabled()
    assert not progress_bar(10, "GD").disable
    assert progress_bar(10, "GD", show=False).disable
    monkeypatch.setenv("DUFM_PROGRESS", "0")
    assert not progress_enabled()
    assert progress_bar(10, "GD").disable


def test_progress_frames_leave_the_notebook_and_other_stderr_stays():
    frames = (
        "GD:  21%|##   | 127/600 [00:01<00:03, 127.93it/s]\r"
        "GD: 100%|#####| 600/600 [00:04<00:00, 130.1it/s]\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            outputs=[nbformat.v4.new_output("stream", name="stderr", text=frames)]
        ),
        nbformat.v4.new_code_cell(
            outputs=[
                nbformat.v4.new_output("stream", name="stderr", text=frames + "UserWarning: x\n"),
                nbformat.v4.new_output("stream", name="stdout", text="sweep: 3 runs\n"),
            ]
        ),
    ]
    assert drop_progress_frames(nb) == 4
    assert nb.cells[0].outputs == []
    assert [o["text"] for o in nb.cells[1].outputs] == ["UserWarning: x\n", "sweep: 3 runs\n"]
    assert drop_progress_frames(nb) == 0
