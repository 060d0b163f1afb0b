"""The wheel carries every subpackage of immutdock: pyproject.toml names them one by one."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_in_the_wheel() -> None:
    packages = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "immutdock").rglob("__init__.py")}
    assert found <= packages, f"not in pyproject.toml's packages: {sorted(found - packages)}"
