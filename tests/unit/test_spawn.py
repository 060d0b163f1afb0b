"""compose's and buildx's processes die with immutdock: a `kill -9` of immutdock (no handler
runs) ends the compose config, compose up or buildx build it started, within a second or two."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from immutdock.gateways.procs import running

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

FAKE = '#!/bin/sh\necho $$ > "$FAKE_PID"\nexec sleep 60\n'  # a compose, buildx or docker that never ends

# A stand-in for immutdock: the named runner of immutdock.gateways.compose, its compose and buildx found
# in the fake folder (the docker CLI too, should it run `docker buildx`).
RUNNER = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from immutdock.gateways import compose
    from immutdock.gateways import spawn
    folder, what, tie = sys.argv[1], sys.argv[2], sys.argv[3]
    compose._PLUGIN_DIRS = (folder,)
    if tie == "python":  # as where util-linux's setpriv is not found
        spawn._setpriv = lambda: None
    if what == "config":
        compose.normalized_model([Path(folder) / "compose.yaml"])
    elif what == "up":
        compose.Compose().up("demo-blue", {"services": {"web": {"image": "busybox", "environment": {"A": "b"}}}})
    else:
        list(compose.Compose().build(Path(folder), dockerfile=Path(folder) / "Dockerfile", tag="demo:1", labels={},
                                     args={}, target=None, secrets=[], build_contexts={}))
    """)


def _fake_tools(folder: Path) -> None:
    for name in ("docker-compose", "docker-buildx", "docker"):
        (folder / name).write_text(FAKE)
        (folder / name).chmod(0o755)
    (folder / "compose.yaml").write_text("services: {}\n")


@pytest.mark.parametrize("tie", ["setpriv", "python"])
@pytest.mark.parametrize("what", ["config", "up", "build"])
def test_a_kill_of_immutdock_kills_the_compose_it_started(tmp_path: Path, what: str, tie: str) -> None:
    from immutdock.gateways import spawn

    if tie == "setpriv" and spawn._setpriv() is None:
        pytest.skip("util-linux's setpriv (2.33 or later) is not on this machine")
    _fake_tools(tmp_path)
    pid_file = tmp_path / "pid"
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "FAKE_PID": str(pid_file), "PATH": f"{tmp_path}:{os.environ['PATH']}",
           "TMPDIR": str(tmp_path / "tmp")}
    immutdock = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path), what, tie], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (pid_file.exists() and pid_file.read_text().strip()):
            if immutdock.poll() is not None:
                raise AssertionError(immutdock.stderr.read() if immutdock.stderr else "it ended")
            assert time.monotonic() < deadline, "the fake compose never started"
            time.sleep(0.02)
        child = int(pid_file.read_text())
        assert running(child)
        os.kill(immutdock.pid, signal.SIGKILL)
        immutdock.wait(timeout=10)
        deadline = time.monotonic() + 2
        while running(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        alive = running(child)
        if alive:
            os.kill(child, signal.SIGKILL)
        assert not alive, f"the {what} child outlived immutdock's kill -9"
    finally:
        if immutdock.poll() is None:
            immutdock.kill()
            immutdock.wait()
        if immutdock.stderr is not None:
            immutdock.stderr.close()


@pytest.fixture(params=["setpriv", "python"])
def tie(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way of tying a child: util-linux's setpriv, and the Python lines where it is not found."""
    from immutdock.gateways import spawn

    if request.param == "python":
        monkeypatch.setattr(spawn, "_setpriv", lambda: None)
    elif spawn._setpriv() is None:
        pytest.skip("util-linux's setpriv (2.33 or later) is not on this machine")
    return str(request.param)


def test_setpriv_ties_a_child_where_it_is_found_and_python_where_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from immutdock.gateways import spawn

    argv = spawn.tied_argv(["true", "a b"])
    if spawn._setpriv():  # the machines this is tested on have it (util-linux)
        assert argv[:4] == [spawn._setpriv(), "--pdeathsig", "KILL", "--"]
        assert argv[-4:] == ["sh", str(os.getpid()), shutil.which("true"), "a b"]
    monkeypatch.setattr(spawn, "_setpriv", lambda: None)
    argv = spawn.tied_argv(["true", "a b"])
    assert argv[:3] == [sys.executable, "-I", "-S"] and argv[-2:] == ["true", "a b"]


def test_a_child_whose_immutdock_is_gone_before_the_tie_ends_at_once(tie: str) -> None:
    """The gap between fork and the ask: a child that finds another parent than the immutdock
    that started it (it was reparented: immutdock died meanwhile) never runs its program."""
    from immutdock.gateways import spawn

    argv = spawn.tied_argv(["echo", "ran"])
    argv[argv.index(str(os.getpid()))] = "1"  # as if immutdock were gone and init had taken the child
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert (done.returncode, done.stdout) == (-signal.SIGKILL, "")


def test_the_tie_does_not_change_how_a_child_runs(tmp_path: Path, tie: str) -> None:
    from immutdock.gateways import spawn

    done = spawn.run(["sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    proc = spawn.popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.communicate("in", timeout=10) == ("in", None) and proc.returncode == 0


def test_no_code_of_immutdock_runs_between_fork_and_exec(monkeypatch: pytest.MonkeyPatch, tie: str) -> None:
    """preexec_fn is unsafe in a process with threads (a lock held by another thread at the fork
    deadlocks the child); the tie is made by the child's own program instead."""
    from immutdock.gateways import spawn

    seen: list[dict] = []
    real = subprocess.Popen

    def spy(argv, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs)
        return real(argv, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    spawn.run(["true"], check=True)
    spawn.popen(["true"]).wait()
    assert seen and all(k.get("preexec_fn") is None for k in seen), seen


def test_a_tied_child_gets_its_arguments_as_given_and_a_missing_program_is_said(tie: str) -> None:
    from immutdock.gateways import spawn

    words = ["a b", "$(touch /tmp/never)", "'", ";", ""]
    out = spawn.run(["sh", "-c", 'printf "%s|" "$0" "$@"', "name", *words], capture_output=True, text=True).stdout
    assert out == "|".join(["name", *words]) + "|"
    with pytest.raises(FileNotFoundError):
        spawn.run(["immutdock-no-such-program"])


def test_a_tied_child_gets_sigpipe_back_as_subprocess_gives_it(tie: str) -> None:
    """Python ignores SIGPIPE at start-up; a program started through the tie must not inherit
    that (a `yes | head` kind of pipe ends it, as it does any program subprocess starts)."""
    from immutdock.gateways import spawn

    status = spawn.run(["sh", "-c", "grep SigIgn /proc/self/status"], capture_output=True, text=True).stdout
    plain = subprocess.run(["sh", "-c", "grep SigIgn /proc/self/status"], capture_output=True, text=True).stdout
    assert status == plain, (status, plain)


def test_compose_reads_the_file_while_the_caller_prepares_and_is_stopped_when_the_caller_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from immutdock.config import compose_file
    from immutdock.gateways import compose

    _fake_tools(tmp_path)
    (tmp_path / "compose.yaml").write_text("name: demo\nservices:\n  web:\n    image: busybox\n")
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("FAKE_PID", str(pid_file))
    monkeypatch.setattr(compose, "_PLUGIN_DIRS", (str(tmp_path),))

    def named(name: str) -> None:  # the caller's preparation (the engine's prefetch) fails
        deadline = time.monotonic() + 5
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline, "compose had not started when the caller was told the name"
            time.sleep(0.02)
        raise RuntimeError(f"prefetch of {name} failed")

    with pytest.raises(RuntimeError, match="prefetch of demo failed"):
        compose_file.load(tmp_path, named=named)
    pid = int(pid_file.read_text())
    assert not running(pid), "compose outlived the failed load"
    with pytest.raises(ChildProcessError):  # reaped, not left a zombie
        os.waitpid(pid, os.WNOHANG)


def test_compose_never_starts_on_a_file_its_checks_refuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from immutdock.config import compose_file
    from immutdock.errors import ConfigError
    from immutdock.gateways import compose

    _fake_tools(tmp_path)
    # An env_file outside the project: refused before compose would read it.
    (tmp_path / "compose.yaml").write_text("name: demo\nservices:\n  web:\n    image: busybox\n"
                                           "    env_file: ../../../../etc/hostname\n")
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("FAKE_PID", str(pid_file))
    monkeypatch.setattr(compose, "_PLUGIN_DIRS", (str(tmp_path),))
    with pytest.raises(ConfigError):
        compose_file.load(tmp_path, named=lambda _name: None)
    time.sleep(0.3)
    assert not pid_file.exists(), "compose read a file the checks refused"
