"""immutdock installs the way users install it: a wheel, into a fresh virtualenv, releases an app."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .support import TinyApp, cleanup

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
CARRIED = ["immutdock/compose/router.yaml", "immutdock/images/router/Dockerfile",
           "immutdock/images/router/router-ctl",
           "immutdock/images/router/router-entrypoint",
           "immutdock/volumes/Dockerfile", "immutdock/volumes/volume-helper"]


def test_a_wheel_in_a_fresh_virtualenv_releases_an_app(tmp_path: Path, engine, app_name: str) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(dist), str(ROOT)], check=True, capture_output=True, text=True)
    wheels = list(dist.glob("immutdock-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
    assert set(CARRIED) <= names, sorted(set(CARRIED) - names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheels[0])],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    immutdock = str(venv / "bin" / "immutdock")
    version = subprocess.run([immutdock, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "immutdock, version" in version.stdout
    doctor = subprocess.run([immutdock, "doctor"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env={"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert doctor.returncode == 0 and "FAIL" not in doctor.stdout, doctor.stdout + doctor.stderr

    app = TinyApp(tmp_path / "app", app_name).write()
    try:  # run far from the source checkout: only what the wheel carries can serve
        proc = subprocess.run([immutdock, "release"], cwd=app.root, capture_output=True, text=True, timeout=600,
                              env={"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert app.visit() == "v1 1"
        proc = subprocess.run([immutdock, "volumes", "backup", "--verify", "--to", str(tmp_path / "backups")],
                              cwd=app.root, capture_output=True, text=True, timeout=600,
                              env={"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)})
        assert proc.returncode == 0 and "verified" in proc.stdout, proc.stderr[-3000:]  # the volume helper's folder
    finally:
        cleanup(app_name)


def _quick_start() -> str:
    """The README's three lines for users (its "Quick start" shell block)."""
    text = (ROOT / "README.md").read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return text.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_readmes_three_lines_install_with_pipx_and_release_an_app(tmp_path: Path, engine, app_name: str) -> None:
    """The README's quick start, run as written: `pipx install ./immutdock` of a clean checkout
    (pipx builds the package itself, in its own venv), then `cd my-app` and `immutdock release`."""
    lines = [line for line in _quick_start().splitlines() if line.strip()]
    assert [line.split("#")[0].split() for line in lines] == [["pipx", "install", "./immutdock"], ["cd", "my-app"],
                                                             ["immutdock", "release"]], lines
    tools = tmp_path / "tools"
    subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True)
    got = subprocess.run([str(tools / "bin" / "pip"), "install", "--quiet", "pipx"], capture_output=True, text=True)
    assert got.returncode == 0, got.stderr[-2000:]
    work = tmp_path / "work"
    # immutdock's source as a user has it (the committed tree: no build leftovers), beside their app
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(work / "immutdock")], check=True)
    app = TinyApp(work / "my-app", app_name).write()
    env = {"PATH": f"{tools / 'bin'}:{tmp_path / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path),
           "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    try:
        proc = subprocess.run(["bash", "-e", "-c", "\n".join(lines)], cwd=work, capture_output=True, text=True,
                              env=env, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"live on blue at {app.url}" in proc.stdout, proc.stdout
        assert app.visit() == "v1 1"
    finally:
        cleanup(app_name)
