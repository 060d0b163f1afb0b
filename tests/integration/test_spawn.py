"""A kill -9 of immutdock ends the compose it started: a `compose up --wait` that would wait
for minutes is gone within two seconds of immutdock's end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

from immutdock.gateways.procs import children, running
from .support import cleanup

pytestmark = [pytest.mark.engine,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")]

# immutdock's compose runner, waiting for a service that stays "starting" for 1000 s.
UP = textwrap.dedent("""\
    import sys
    from immutdock.gateways.compose import Compose
    app = sys.argv[1]
    model = {"name": f"{app}-blue", "services": {"never": {
        "image": "busybox:latest", "command": ["sleep", "600"], "init": True,
        "labels": {"io.immutdock.app": app, "io.immutdock.role": "color"},
        "healthcheck": {"test": ["CMD", "false"], "interval": "1s", "retries": 1000}}}}
    Compose().up(f"{app}-blue", model, wait=True, timeout=600)
    """)


@pytest.fixture
def app(engine, app_name: str) -> Iterator[str]:
    yield app_name
    cleanup(app_name)


def _compose_child(pid: int, deadline: float) -> int:
    while time.monotonic() < deadline:
        for child in children(pid):
            if b"--wait" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        time.sleep(0.05)
    raise AssertionError("compose up --wait never started")


def test_a_kill_of_immutdock_ends_its_compose_up(app: str, tmp_path: Path) -> None:
    immutdock = subprocess.Popen([sys.executable, "-c", UP, app], env={**os.environ, "TMPDIR": str(tmp_path)},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    compose = None
    try:
        compose = _compose_child(immutdock.pid, time.monotonic() + 60)
        time.sleep(1)  # compose is waiting now
        assert immutdock.poll() is None and running(compose)
        os.kill(immutdock.pid, signal.SIGKILL)
        immutdock.wait(timeout=10)
        deadline = time.monotonic() + 2
        while running(compose) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(compose), "compose up outlived immutdock's kill -9"
    finally:
        if immutdock.poll() is None:
            immutdock.kill()
            immutdock.wait()
        if compose is not None and running(compose):
            os.kill(compose, signal.SIGKILL)
