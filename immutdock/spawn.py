"""Child processes (compose, buildx) that die with immutdock.

On Linux each child asks the kernel, before it runs its program, for SIGKILL when immutdock
goes (prctl PR_SET_PDEATHSIG): a `kill -9` of immutdock, which runs no handler, still ends
the compose or buildx it started, and nothing it was doing goes on unseen. The kernel sends it
when the thread that started the child ends, so a child is waited for by the thread that
started it (every caller here does). Only the child itself is tied: a program it starts in
turn (the docker CLI's plugin, when compose or buildx is not found as a plugin binary) is not.
Elsewhere children are started as they are."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import lru_cache
from typing import Any, Callable

PR_SET_PDEATHSIG = 1


@lru_cache(maxsize=1)
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, loaded before any fork (the child only calls it)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def _tied(parent: int, prctl: Callable[..., int]) -> Callable[[], None]:
    def tie() -> None:  # runs in the child, between fork and exec
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # immutdock died before the tie was made
            os.kill(os.getpid(), signal.SIGKILL)

    return tie


def _with_tie(kwargs: dict[str, Any]) -> dict[str, Any]:
    prctl = _prctl()
    if prctl is not None and "preexec_fn" not in kwargs:
        kwargs["preexec_fn"] = _tied(os.getpid(), prctl)
    return kwargs


def popen(argv: list[str], **kwargs: Any) -> "subprocess.Popen[Any]":
    """subprocess.Popen, the child tied to this process's life."""
    return subprocess.Popen(argv, **_with_tie(kwargs))


def run(argv: list[str], **kwargs: Any) -> "subprocess.CompletedProcess[Any]":
    """subprocess.run, the child tied to this process's life."""
    return subprocess.run(argv, **_with_tie(kwargs))
