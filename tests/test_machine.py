"""Unit tests of dufm.machine: what a run ran on."""

import subprocess

from dufm import machine


def test_machine_facts_name_the_stack_and_the_cpu(tmp_path):
    facts = machine.machine_facts()
    assert set(facts) == {"python", "torch", "numpy", "cpu", "cores", "gpu", "platform", "commit"}
    assert all(isinstance(v, str) and v for v in facts.values())
    assert facts["torch"].startswith("2.")
    assert machine.git_commit(tmp_path) == "unknown"  # not a git checkout


def test_the_commit_says_dirty_when_tracked_files_changed(tmp_path):
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "f").write_text("1")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    clean = machine.git_commit(tmp_path)
    assert len(clean) == 40
    (tmp_path / "f").write_text("2")
    assert machine.git_commit(tmp_path) == clean + "-dirty"
