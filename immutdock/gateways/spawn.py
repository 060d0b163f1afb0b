"""Child processes (compose, buildx) that die with immutdock.

On Linux each child asks the kernel, before it runs its program, for SIGKILL when immutdock
goes (prctl PR_SET_PDEATHSIG): a `kill -9` of immutdock, which runs no handler, still ends
the compose or buildx it started, and nothing it was doing goes on unseen. The ask is made by
the child's own first program, which then execs the real one: util-linux's `setpriv
--pdeathsig KILL` (2.33 and later) where it is found, with /bin/sh after it to end the child
when immutdock had gone before the ask was made (about 2 ms in all; the program's argv[0] is
then its path), else a few lines of Python that do both (`python -I -S -c`, about 13 ms).
Either way nothing of the program's arguments is read as code: the shell gets them as
positional parameters of a constant script. No code runs between fork and exec in immutdock's
own process (`preexec_fn` is not safe in a process with threads). The kernel sends the signal
when the thread that started the child ends, so a child is waited for by the thread that
started it (every caller here does). Only the child itself is tied: a program it starts in
turn (the docker CLI's plugin, when compose or buildx is not found as a plugin binary) is not.
Elsewhere children are started as they are."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from typing import Any

# Run in the child: tie it to its parent (argv[1]), unless that parent is already gone, then
# become the program (argv[2], its own argv[3:]). Nothing of the program's arguments reaches a shell.
# Python ignores SIGPIPE and SIGXFSZ at start-up; the program gets them back as subprocess
# gives them (restore_signals). A libc without prctl leaves the child untied, as before.
_TIE = ("import os, signal, sys\n"
        "try:\n"
        "    import ctypes\n"
        "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))\n"  # 1: PR_SET_PDEATHSIG
        "except (ImportError, OSError, AttributeError):\n"
        "    pass\n"
        "os.getppid() == int(sys.argv[1]) or os.kill(os.getpid(), signal.SIGKILL)\n"
        "for name in ('SIGPIPE', 'SIGXFSZ'):\n"
        "    signal.signal(getattr(signal, name), signal.SIG_DFL)\n"
        "try:\n"
        "    os.execv(sys.argv[2], sys.argv[3:])\n"
        "except OSError as exc:\n"
        "    sys.stderr.write(f'cannot run {sys.argv[2]}: {exc.strerror}\\n')\n"
        "    sys.exit(127)\n")


# Run by /bin/sh after setpriv made the ask: $1 is immutdock's PID, the rest the program and its arguments.
_CHECK = '[ "$PPID" = "$1" ] || kill -9 $$; shift; exec "$@"'


_probed: list[str | None] = []  # the answer of _setpriv, once it is known
_probing = threading.Lock()


def warm() -> None:
    """Look for setpriv in the background now (a process of its own), so the first child a
    command starts does not wait for that look."""
    if sys.platform.startswith("linux") and not _probed:
        threading.Thread(target=_setpriv, name="setpriv probe", daemon=True).start()


def _setpriv() -> str | None:
    """util-linux's setpriv, if it is here, knows --pdeathsig (2.33 and later) and can run
    /bin/sh; looked for once per process."""
    with _probing:
        if not _probed:
            _probed.append(_probe())
        return _probed[0]


def _probe() -> str | None:
    found = shutil.which("setpriv", path=os.defpath + ":/usr/bin:/bin:/usr/sbin:/sbin")
    if found is None or not os.access("/bin/sh", os.X_OK):
        return None
    try:
        done = subprocess.run([found, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", ":"], capture_output=True,
                              timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return found if done.returncode == 0 else None


def tied_argv(argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    """`argv` as started tied to this process's life (as it is where that cannot be done).
    The program is looked up here, in `env`'s PATH: one that is not found raises
    FileNotFoundError, as subprocess does."""
    if not sys.platform.startswith("linux") or not sys.executable:
        return argv
    path = (env if env is not None else os.environ).get("PATH", os.defpath)
    program = argv[0] if os.sep in argv[0] else shutil.which(argv[0], path=path)
    if program is None:
        raise FileNotFoundError(2, "No such file or directory", argv[0])
    if setpriv := _setpriv():
        return [setpriv, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", _CHECK, "sh", str(os.getpid()), program,
                *argv[1:]]
    return [sys.executable, "-I", "-S", "-c", _TIE, str(os.getpid()), program, *argv]


def popen(argv: list[str], **kwargs: Any) -> "subprocess.Popen[Any]":
    """subprocess.Popen, the child tied to this process's life."""
    return subprocess.Popen(tied_argv(argv, kwargs.get("env")), **kwargs)


def run(argv: list[str], **kwargs: Any) -> "subprocess.CompletedProcess[Any]":
    """subprocess.run, the child tied to this process's life."""
    return subprocess.run(tied_argv(argv, kwargs.get("env")), **kwargs)
