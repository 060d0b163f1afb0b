"""The shell session kept open in a container (the router's): argument vectors are data, and
every read has a deadline."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Iterator

import pytest

from immutdock.errors import EngineError
from immutdock.gateways.docker_exec import ExecSession
from immutdock.gateways.engine import Engine
from .support import cleanup


@pytest.fixture
def shell_container(engine, app_name: str) -> Iterator[str]:
    box = engine.containers.run("busybox:latest", ["sleep", "600"], detach=True,
                                labels={"io.immutdock.app": app_name}, name=f"{app_name}-shell")
    yield box.id
    cleanup(app_name)


@pytest.mark.parametrize("word", ["/h;touch /tmp/pwned;true", "/he'alth", '"$(touch /tmp/pwned)"', "`touch /tmp/pwned`",
                                  "a\nb", "x && touch /tmp/pwned", "$HOME", ""])
def test_each_word_reaches_the_command_as_it_is(shell_container: str, word: str) -> None:
    session = ExecSession(Engine(), shell_container)
    try:
        code, out = session.run(["printf", "[%s]", word, "after"])
        assert code == 0, out
        assert out == f"[{word}][after]"
        code, out = session.run(["ls", "/tmp/pwned"])
        assert code != 0, "a word reached the shell as code"
    finally:
        session.close()


def test_a_command_that_does_not_finish_fails_within_its_deadline(shell_container: str) -> None:
    session = ExecSession(Engine(), shell_container)
    t0 = time.monotonic()
    with pytest.raises(EngineError, match="did not finish within 1 s"):
        session.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - t0 < 3
    with pytest.raises(EngineError, match="broke"):  # never reused once its state is unknown
        session.run(["true"])


def test_a_streamed_exec_that_stops_answering_fails_within_its_deadline(shell_container: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(EngineError, match="no output for 1 s"):
        Engine().exec_stream(shell_container, ["sleep", "30"], "a silent command", timeout=1)
    assert time.monotonic() - t0 < 3


def test_the_session_is_opened_without_docker_py(shell_container: str) -> None:
    """The router's shell is the first thing a release asks of it: opened over the standard
    library's HTTP (the connection taken over), not after docker-py's import."""
    code = ("import sys\nfrom immutdock.gateways.docker_exec import ExecSession\n"
            "from immutdock.gateways.engine import Engine\n"
            "s = ExecSession(Engine(), sys.argv[1])\ncode, out = s.run(['sh', '-c', 'echo out; echo err >&2; exit 3'])\n"
            "print(code, sorted(out.split()))\n"
            "s.close()\nprint('docker' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code, shell_container], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["3 ['err', 'out']", "False"]


def test_a_shell_in_a_stopped_container_is_refused_with_the_engines_message(engine, app_name: str) -> None:
    box = engine.containers.create("busybox:latest", ["sleep", "600"], labels={"io.immutdock.app": app_name})
    try:
        with pytest.raises(EngineError, match=r"open a shell in the router: .*is not running"):
            ExecSession(Engine(), box.id)
        with pytest.raises(OSError, match="No such exec instance: nonexistent"):
            Engine().wire.upgrade("/exec/nonexistent/start", {"Detach": False, "Tty": False})
    finally:
        cleanup(app_name)
