"""Compose's conventions and `immutdock version`: -p, COMPOSE_FILE, the versions of what immutdock drives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from immutdock.cli.doctor import MINIMUM, parse_version

from .support import free_port

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


def test_project_name_before_or_after_the_command_names_the_app(engine: object, tmp_path: Path,
                                                                  app_name: str) -> None:
    """-p/--project-name, as compose's: the app's name over the file's `name:`; a bad one is
    refused naming -p (exit 2)."""
    (tmp_path / "compose.yaml").write_text("name: filename\nservices:\n  web:\n    image: busybox:latest\n"
                                           f"    command: [httpd, -f, -p, '8000']\n    ports: ['{free_port()}:8000']\n")

    def plan(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "immutdock", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    assert "as filename-blue" in plan("plan").stdout
    for args in (("-p", app_name, "plan"), ("plan", "--project-name", app_name)):
        proc = plan(*args)
        assert proc.returncode == 0 and f"start  r1 as {app_name}-blue" in proc.stdout, (args, proc.stdout, proc.stderr)
    bad = plan("plan", "-p", "Bad_Name")
    assert bad.returncode == 2 and bad.stderr.startswith("error: -p: invalid project name"), bad.stderr


def test_compose_file_lists_the_files_of_the_app(engine: object, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """COMPOSE_FILE (with COMPOSE_PATH_SEPARATOR), as compose reads it: its files, merged."""
    (tmp_path / "base.yaml").write_text("services:\n  web:\n    image: busybox:latest\n"
                                        f"    command: [httpd, -f, -p, '8000']\n    ports: ['{free_port()}:8000']\n")
    (tmp_path / "more.yaml").write_text("services:\n  worker:\n    image: busybox:latest\n    command: [sleep, '1000']\n")

    def roles(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "immutdock", "plan", "--json"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, env={**os.environ, **env})

    for env in ({"COMPOSE_FILE": "base.yaml:more.yaml"},
                {"COMPOSE_FILE": "base.yaml,more.yaml", "COMPOSE_PATH_SEPARATOR": ","}):
        proc = roles(**env)
        assert proc.returncode == 0, proc.stderr
        assert [r["service"] for r in json.loads(proc.stdout)["roles"]] == ["web", "worker"], proc.stdout
    missing = roles(COMPOSE_FILE="base.yaml:nope.yaml")
    assert missing.returncode == 2 and "COMPOSE_FILE: nope.yaml: no such compose file" in missing.stderr, missing.stderr


def test_compose_reads_the_project_files_strings_as_strings(engine: object) -> None:
    """The files immutdock writes for compose (YAML 1.2) keep every string a string: `1e3` and
    `0o17`, which PyYAML's YAML 1.1 leaves unquoted, are not read as 1000 and 15."""
    from immutdock.gateways import compose
    from immutdock.gateways.compose import _compose_argv

    odd = ["0o17", "-0o7", "1e3", "1E-3", "+1.5e+3", ".5e1", "1.", "0x1f", "yes", "on", "1_000", "2026-12-07", ".inf"]
    model = {"services": {"web": {"image": "busybox:latest", "command": ["echo", *odd],
                                  "labels": {f"n{i}": v for i, v in enumerate(odd)}}}}
    writer = compose.Compose()
    try:
        path, env = writer._file("numbers-blue", model)
        read = subprocess.run(_compose_argv() + ["--file", str(path), "--project-name", "numbers-blue", "config",
                                                 "--format", "json"], capture_output=True, text=True, env=env,
                              timeout=60)
    finally:
        writer.close()
    assert read.returncode == 0, read.stderr
    web = json.loads(read.stdout)["services"]["web"]
    assert web["command"] == ["echo", *odd]
    assert web["labels"] == {f"n{i}": v for i, v in enumerate(odd)}
