"""Unit tests of dufm.progress: bars on terminals and in logs, none inside a book build."""

from dufm.progress import progress_bar, progress_enabled


def test_a_bar_is_off_when_asked_or_inside_a_book_build(monkeypatch):
    monkeypatch.delenv("DUFM_PROGRESS", raising=False)
    assert progress_enabled()
    assert not progress_bar(10, "GD").disable
    assert progress_bar(10, "GD", show=False).disable
    monkeypatch.setenv("DUFM_PROGRESS", "0")
    assert not progress_enabled()
    assert progress_bar(10, "GD").disable
