"""immutdock's temporary folders: private (0700, files 0600), each saying who made it; the
folders of runs that are gone (a kill -9) are removed by the next command, a live run's never."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from immutdock.gateways import scratch
from immutdock.gateways.procs import machine_id, start_time

pytestmark = pytest.mark.skipif(not machine_id(), reason="needs /proc (Linux)")


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _left_by(temp: Path, name: str, pid: int, start: str, machine: str | None = None) -> Path:
    """A folder as a run with `pid` (started at `start`) made it, a rendered file in it."""
    folder = temp / name
    folder.mkdir(mode=0o700)
    (folder / scratch.OWNER).write_text(json.dumps({"machine": machine or machine_id(), "pid": pid, "start": start}))
    (folder / "app-blue.yaml").write_text("services: {}\n")
    return folder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_folder_is_private_and_says_who_made_it(temp: Path) -> None:
    before = os.umask(0o022)  # what most shells have: files 0644 unless made otherwise
    try:
        folder = scratch.folder("immutdock-")
        scratch.write(folder / "app-blue.yaml", "services: {}\n")
    finally:
        os.umask(before)
    assert folder.parent == temp and folder.name.startswith("immutdock-")
    assert _mode(folder) == 0o700 and _mode(folder / "app-blue.yaml") == 0o600
    assert scratch.owner(folder) == {"machine": machine_id(), "pid": os.getpid(), "start": start_time(os.getpid())}
    (folder / "loose.yaml").write_text("x")
    (folder / "loose.yaml").chmod(0o644)
    scratch.write(folder / "loose.yaml", "y")
    assert _mode(folder / "loose.yaml") == 0o600, "a file written again is made private too"


def test_the_folders_of_gone_runs_are_removed_and_live_ones_kept(temp: Path) -> None:
    dead = _left_by(temp, "immutdock-dead", _dead_pid(), "1")
    reused = _left_by(temp, "immutdock-reused", os.getpid(), "1")  # this PID, but another process's start time
    live = _left_by(temp, "immutdock-live", os.getpid(), start_time(os.getpid()))
    elsewhere = _left_by(temp, "immutdock-ssh-elsewhere", _dead_pid(), "1", machine="another-boot/pid:[1]")
    other = _left_by(temp, "other-tool", _dead_pid(), "1")
    assert sorted(scratch.reap()) == sorted([dead, reused])
    assert not dead.exists() and not reused.exists()
    assert live.exists() and elsewhere.exists() and other.exists(), "a live run's, another machine's, not ours"


def test_a_folder_an_older_immutdock_left_goes_after_a_day(temp: Path) -> None:
    old, fresh, foreign = (temp / n for n in ("immutdock-old", "immutdock-fresh", "immutdock-link-x"))
    for folder, name in ((old, "app-blue.yaml"), (fresh, "app-blue.yaml"), (foreign, "engine.sock")):
        folder.mkdir()
        (folder / name).write_text("x")
    day_ago = time.time() - scratch.LEGACY_AGE - 60
    for folder in (old, foreign):
        os.utime(folder, (day_ago, day_ago))
    assert scratch.reap() == [old]
    assert fresh.exists() and foreign.exists()


def test_compose_writes_its_files_there_without_a_value(temp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from immutdock.gateways.compose import Compose

    monkeypatch.setattr(scratch, "_reaped", False)
    gone = _left_by(temp, "immutdock-killed", _dead_pid(), "1")
    compose = Compose(hidden={"pw-4f3e2d1c"})
    assert not gone.exists(), "the first Compose of a process reaps"
    try:
        argv, env = compose._project("app-blue", {"services": {"web": {
            "image": "busybox", "environment": {"DATABASE_URL": "postgres://a:pw-4f3e2d1c@db/x"},
            "command": ["serve", "--db=postgres://a:pw-4f3e2d1c@db/x"], "labels": {"pw": "pw-4f3e2d1c"}}}})
        path = Path(argv[argv.index("--file") + 1])
        assert _mode(path.parent) == 0o700 and _mode(path) == 0o600
        assert "pw-4f3e2d1c" not in path.read_text() and "IMMUTDOCK_VALUE_" in path.read_text()
        assert "postgres://a:pw-4f3e2d1c@db/x" in env.values()
    finally:
        compose.close()
    assert not path.parent.exists()


def test_a_saved_archive_lives_in_a_private_folder_that_the_next_command_can_reap(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`docker save` for shipping is written into a scratch folder (0700, with its owner), not
    a bare /tmp file: a killed run's archive is removed by the next command."""
    import io
    import json
    import stat
    import tarfile
    import tempfile

    from immutdock.targets import ship

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    class Builder:
        def save_images(self, refs: list[str], out) -> None:  # noqa: ANN001
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for name, data in (("manifest.json", json.dumps([{"Config": "c.json", "Layers": []}]).encode()),
                                   ("c.json", b"{}")):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            out.write(buf.getvalue())

    archive = ship.Archive(Builder(), ["app-web:1"])  # type: ignore[arg-type]
    folder = Path(archive.path).parent
    assert folder.parent == tmp_path and folder.name.startswith("immutdock-save-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and (folder / ".owner").exists()
    assert stat.S_IMODE(Path(archive.path).stat().st_mode) == 0o600
    assert archive.manifest == [{"Config": "c.json", "Layers": []}]
    archive.close()
    assert not folder.exists()
