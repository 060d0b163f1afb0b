"""The program's entry (immutdock/cli/entry.py): the command's exit status, what the
interpreter's exit would have done first (exit handlers, flushed output, the threads it
waits for), and the process ended without the interpreter's teardown."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from immutdock.cli import entry

ROOT = Path(__file__).resolve().parents[2]


def _program(tmp_path: Path, before: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A Python process that runs `before`, then the entry with `args` as the command line."""
    code = (f"import sys\n{before}\nsys.argv = ['immutdock', *{list(args)!r}]\n"
            "from immutdock.cli.entry import run\nrun()\nprint('not reached')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe's output buffered, as usual
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env=env)


def test_the_console_script_and_python_m_run_the_entry() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"immutdock": "immutdock.cli.entry:run"}
    assert "from immutdock.cli.entry import run" in (ROOT / "immutdock" / "__main__.py").read_text()


def test_the_command_s_exit_status_and_output_come_out(tmp_path: Path) -> None:
    ok = _program(tmp_path, "", "--version")
    assert (ok.returncode, ok.stdout.strip()) == (0, f"immutdock, version {__import__('immutdock').__version__}")
    bad = _program(tmp_path, "", "nosuch")
    assert bad.returncode == 2 and "No such command 'nosuch'" in bad.stderr and "not reached" not in bad.stdout


def test_exit_handlers_run_and_buffered_output_is_flushed_before_the_process_ends(tmp_path: Path) -> None:
    """A handler registered with atexit runs, after the command, and what was printed without a
    newline into a pipe's buffer still comes out."""
    done = tmp_path / "handled"
    before = ("import atexit, pathlib\n"
              f"atexit.register(lambda: (pathlib.Path({str(done)!r}).write_text('yes'), "
              "sys.stdout.write('from the handler, no newline')))")
    proc = _program(tmp_path, before, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("from the handler, no newline") and "version" in proc.stdout
    assert done.read_text() == "yes"


def test_a_thread_the_interpreter_waits_for_is_waited_for(tmp_path: Path) -> None:
    """A thread that is not a daemon still runs when the command is done: the process ends
    as the interpreter's own exit does, once that thread has finished."""
    done = tmp_path / "finished"
    before = ("import threading, time, pathlib\n"
              "import immutdock.cli.entry as entry\n"
              "ran, command = threading.Event(), entry.main\n"
              "entry.main = lambda: (command(), ran.set())[0]\n"  # the thread is still running after the command
              f"threading.Thread(target=lambda: (ran.wait(), time.sleep(0.3), pathlib.Path({str(done)!r}).write_text('yes'))).start()")
    proc = _program(tmp_path, before, "--version")
    assert proc.returncode == 0, proc.stderr
    assert done.read_text() == "yes"


def test_the_interpreter_s_teardown_is_skipped(tmp_path: Path) -> None:
    """What only the teardown would do (a module's object finalized as the modules are cleared)
    does not happen: the process ends once the command and the exit handlers are done."""
    torn = tmp_path / "torn-down"
    before = ("import pathlib\n"
              "class Finalized:\n"
              f"    def __del__(self): pathlib.Path({str(torn)!r}).write_text('yes')\n"
              "KEPT = Finalized()")
    proc = _program(tmp_path, before, "--version")
    assert proc.returncode == 0, proc.stderr
    assert not torn.exists()
    normal = subprocess.run([sys.executable, "-c", before.replace("import pathlib", "import pathlib, sys")],
                            capture_output=True, text=True, timeout=60)
    assert normal.returncode == 0 and torn.read_text() == "yes"  # the interpreter's own exit does run it


@pytest.mark.parametrize(("value", "code", "said"), [(None, 0, ""), (0, 0, ""), (3, 3, ""), ("gone", 1, "gone\n")])
def test_exit_code_is_what_sys_exit_ends_with(value: object, code: int, said: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.exit_code(value) == code
    assert capsys.readouterr().err == said
