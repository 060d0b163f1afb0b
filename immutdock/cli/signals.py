"""Signals while a command runs: SIGTERM works like Ctrl-C, and neither cuts a step that must
finish whole (a stateful recreate, an undo); child processes never outlive the command."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import click

from immutdock.errors import Terminated


def on_sigterm(_sig: int, _frame: Any) -> None:
    """SIGTERM works like Ctrl-C: child processes (buildx, compose) are stopped, and the
    command unwinds through the same undo, lock release and record as an interrupt; a step
    that must not be cut in half (a stateful recreate, an undo) finishes first."""
    if _deferred(Terminated()):
        return
    _stop_children()
    raise Terminated()


def on_sigint(_sig: int, _frame: Any) -> None:
    if not _deferred(KeyboardInterrupt()):
        raise KeyboardInterrupt()


def _deferred(exc: KeyboardInterrupt) -> bool:
    from immutdock import interrupts

    what = interrupts.section()
    if what is None:
        return False
    interrupts.defer(exc)
    from immutdock.cli.context import paint

    click.echo(paint(f"interrupt: finishing {what} first, then stopping", "yellow"), err=True)
    return True


def _stop_children(grace: float = 5.0) -> None:
    """SIGTERM to every child process (buildx, compose), then wait until each has exited, so
    none outlives the command; one still running after `grace` seconds gets SIGKILL."""
    from immutdock.gateways.procs import children, running

    pids = children(os.getpid())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            continue
    deadline = time.monotonic() + grace
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if running(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
