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


def test_pipx_install_of_the_source_tree_releases_an_app(tmp_path: Path, engine, app_name: str) -> None:
    """`pipx install .` from a clean checkout: pipx builds the package itself, in its own venv."""
    tools = tmp_path / "tools"
    subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True)
    got = subprocess.run([str(tools / "bin" / "pip"), "install", "--quiet", "pipx"], capture_output=True, text=True)
    assert got.returncode == 0, got.stderr[-2000:]
    checkout = tmp_path / "checkout"  # what a user clones (the committed tree): no build leftovers
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True)
    env = {"PATH": f"{tools / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path),
           "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    install = subprocess.run([str(tools / "bin" / "pipx"), "install", "."], cwd=checkout, capture_output=True,
                             text=True, env=env, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    immutdock = str(tmp_path / "bin" / "immutdock")
    app = TinyApp(tmp_path / "app", app_name).write()
    try:
        proc = subprocess.run([immutdock, "release"], cwd=app.root, capture_output=True, text=True, timeout=600,
                              env={**env, "PATH": f"{tmp_path / 'bin'}:/usr/local/bin:/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert app.visit() == "v1 1"
    finally:
        cleanup(app_name)
