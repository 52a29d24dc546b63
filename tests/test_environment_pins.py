"""requirements.txt and environment.yml pin the same stack; the environment matches the pins."""

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml
from packaging.markers import Marker

ROOT = Path(__file__).resolve().parents[1]
# NAME==VERSION, optionally with an environment marker (the mkl family: x86-64 Linux only)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)(?: ; (.+))?$")


def requirement_lines() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def environment_pip_lines() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict) and "pip" in dep]
    assert len(pip) == 1, "environment.yml needs exactly one pip: section"
    return [str(line).strip() for line in pip[0]]


def test_requirements_are_exact_pins_of_the_key_packages():
    pins = dict(PIN.match(line).groups()[:2] for line in requirement_lines())
    assert len(pins) == len(requirement_lines()), "every requirements line must be NAME==VERSION"
    assert pins["torch"] == "2.13.0"
    assert pins["jupyter-book"].startswith("1."), "Jupyter Book 2 ignores _config.yml/_toc.yml"


def test_environment_yml_mirrors_requirements():
    env = environment_pip_lines()
    req = requirement_lines()
    only_env = sorted(set(env) - set(req) - {"-e ."})
    only_req = sorted(set(req) - set(env))
    assert not only_env and not only_req, (
        f"environment.yml pip section and requirements.txt differ: only in environment.yml "
        f"{only_env}, only in requirements.txt {only_req}"
    )
    assert "-e ." in env, "environment.yml must install dufm itself (-e .)"
    assert len(env) == len(set(env)), "duplicate lines in environment.yml"
    env_yml = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env_yml["dependencies"]


def test_installed_versions_match_the_pins():
    wrong = []
    for line in requirement_lines():
        name, pinned, marker = PIN.match(line).groups()
        if marker and not Marker(marker).evaluate():
            continue  # not installed on this platform
        try:
            installed = version(name)
        except PackageNotFoundError:
            wrong.append(f"{name} not installed")
            continue
        if installed.split("+")[0] != pinned:  # torch: 2.13.0+cpu satisfies 2.13.0
            wrong.append(f"{name} {installed} != {pinned}")
    assert not wrong, "environment drifted from requirements.txt: " + "; ".join(wrong)


def test_the_citation_validator_has_exact_pins_of_its_own():
    lines = (ROOT / "requirements-cff.txt").read_text().splitlines()
    lines = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    matches = [PIN.match(line) for line in lines]
    assert all(matches), "every requirements-cff.txt line must be NAME==VERSION"
    cff = dict(match.groups()[:2] for match in matches)
    stack = dict(PIN.match(line).groups()[:2] for line in requirement_lines())
    assert "cffconvert" in cff and "cffconvert" not in stack
    # Why it is separate: cffconvert needs jsonschema < 4, the book's stack pins jsonschema 4.
    assert cff["jsonschema"].startswith("3.") and stack["jsonschema"].startswith("4.")
