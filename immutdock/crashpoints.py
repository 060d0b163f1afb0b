"""Named moments of a release where a crash test can stop immutdock.

With IMMUTDOCK_STOP_AT=NAME[,NAME...] in its environment, immutdock stops itself (SIGSTOP) on
reaching each moment named, so that a test can SIGKILL it exactly there, or let it go on
(SIGCONT). Without it, reaching a moment costs one look at the environment. The moments, in
the order a release reaches them: cleanup, shared, start, gate, record, switch, settle, drain,
retire, post-switch."""

from __future__ import annotations

import os
import signal

MOMENTS = ("cleanup", "shared", "start", "gate", "record", "switch", "settle", "drain", "retire", "post-switch")


def reached(moment: str) -> None:
    names = os.environ.get("IMMUTDOCK_STOP_AT")
    if names and moment in names.split(","):
        os.kill(os.getpid(), signal.SIGSTOP)
