"""`immutdock version`: immutdock's version and those of the engine, compose and buildx it drives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from immutdock.cli.doctor import MINIMUM, parse_version

pytestmark = pytest.mark.engine


def test_version_names_the_engine_compose_and_buildx(engine: object, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "immutdock", "version", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert list(found) == ["immutdock", "engine", "compose", "buildx"]
    for name in ("engine", "compose", "buildx"):
        assert (parse_version(found[name]) or (0, 0)) >= MINIMUM[name], found
    text = subprocess.run([sys.executable, "-m", "immutdock", "version"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60).stdout
    assert text.splitlines()[1].split(None, 1) == ["engine", found["engine"]]
