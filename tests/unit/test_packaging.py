"""The wheel carries every subpackage of immutdock: pyproject.toml names them one by one."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_in_the_wheel() -> None:
    packages = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "immutdock").rglob("__init__.py")}
    assert found <= packages, f"not in pyproject.toml's packages: {sorted(found - packages)}"


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_package_says_its_license_and_kind_to_an_index() -> None:
    project = _project()
    assert project["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert project["license-files"] == ["LICENSE"]
    classifiers = set(project["classifiers"])
    assert {"Environment :: Console", "Operating System :: POSIX :: Linux",
            "Programming Language :: Python :: 3.11"} <= classifiers


def test_every_dependency_leaves_out_the_next_major() -> None:
    """A new major of a dependency (paramiko 4 -> 5 came in unasked) waits until the suite ran on it."""
    import re

    project = _project()
    wanted = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    unbounded = [d for d in wanted if not re.search(r"<\d", d)]
    assert unbounded == [], unbounded


def test_the_readme_renders_on_a_package_index() -> None:
    """An index shows the README without the repository beside it: no relative link or picture."""
    import re

    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert [link for link in links if not link.startswith(("https://", "http://"))] == [], links
