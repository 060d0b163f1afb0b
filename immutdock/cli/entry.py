"""The program itself: the console script and `python -m immutdock` run `run`.

Once the command is done, the process ends without the interpreter's own teardown, which
clears every module and collects every object one by one: about 25 ms of a no-op release's
0.2 s, and more on a busy machine. What that teardown would have done that matters still
happens first: the exit handlers registered with `atexit` (logging's flush among them), then
the standard streams are flushed. While a thread other than a daemon one still runs, the
interpreter's usual exit waits for it, as it always has. A daemon thread is not waited for, nor
a pool a daemon thread made (its workers are daemons too): the background reads a command starts
(cli/context.py `_background`) are only reads, and a command that is done no longer needs them."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

from immutdock.cli.main import main


def exit_code(value: Any) -> int:
    """The status `sys.exit(value)` ends with; what it would print first (a message) is printed."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def _waited() -> bool:
    """A thread the interpreter's exit would wait for (not a daemon) still runs."""
    return any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate())


def run() -> None:
    try:
        code = exit_code(main())
    except SystemExit as exc:
        code = exit_code(exc.code)
    if _waited():
        sys.exit(code)
    atexit._run_exitfuncs()  # noqa: SLF001 - what the interpreter runs at exit, before its teardown
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`), a closed stream: nothing more to say
            pass
    os._exit(code)
