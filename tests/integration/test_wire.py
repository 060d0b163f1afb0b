"""The engine's events over the standard library's HTTP: they come as they happen, the
stream ends a waiting reader when the `with` ends, and docker-py is never imported for them
(the watch after a switch starts at once)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .support import cleanup

pytestmark = pytest.mark.engine

READER = """\
import subprocess, sys, threading, time
from immutdock.gateways.engine import Engine
app = sys.argv[1]
seen, ended = [], threading.Event()

def read(stream):
    try:
        for event in stream:
            seen.append(event.get("Action"))
    except Exception:
        pass
    ended.set()

with Engine().events("watch", **{"io.immutdock.app": app}) as stream:
    threading.Thread(target=read, args=(stream,), daemon=True).start()
    time.sleep(0.3)
    subprocess.run(["docker", "run", "--rm", "--label", f"io.immutdock.app={app}", "busybox:latest", "true"],
                   check=True, capture_output=True)
    subprocess.run(["docker", "run", "--rm", "--label", "io.immutdock.app=someone-else", "busybox:latest", "true"],
                   check=True, capture_output=True)
    deadline = time.monotonic() + 10
    while "destroy" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # another app's events would have come by now
print(" ".join(seen))
print(ended.wait(5), "docker" in sys.modules)
"""


def test_events_come_as_they_happen_and_end_with_the_watch(engine, app_name: str) -> None:
    try:
        proc = subprocess.run([sys.executable, "-c", READER, app_name], capture_output=True, text=True, timeout=60)
    finally:
        cleanup(app_name)
    assert proc.returncode == 0, proc.stderr
    events, ended = proc.stdout.splitlines()
    assert events.split() == ["create", "attach", "start", "die", "destroy"], events  # only this app's
    assert ended == "True False"  # the reader was woken at the end; no docker-py import
