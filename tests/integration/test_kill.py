"""SIGKILL at every step of a release: whatever moment immutdock dies, the app serves (the old
version or the new one, never none), at most one database ever runs, `history` names what
serves, a request in flight on the old color is not cut, and the next release succeeds.

immutdock stops itself at a named moment (IMMUTDOCK_STOP_AT, see immutdock/crashpoints.py);
the test kills it there. The recreate of the stateful db is killed while compose runs it."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Iterator

import pytest

from immutdock.crashpoints import MOMENTS
from .support import Background, StateWatch, TinyApp, cleanup, compose_yaml, get, json_out, run_cli, stopped

pytestmark = pytest.mark.engine

# A db that takes its whole grace period to stop (httpd as PID 1 ignores SIGTERM): its recreate
# is under way for 3 s, and immutdock is killed meanwhile.
SLOW_DB = 'build: ./db\nstop_grace_period: 3s\nvolumes: ["data:/data"]'
SLOW4 = """\
#!/bin/sh
sleep 4
echo "Content-Type: text/plain"; echo
echo "slow4 $(cat /www/version)"
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, engine) -> Iterator[TinyApp]:
    import uuid

    name = f"itkill{uuid.uuid4().hex[:6]}"
    tiny = TinyApp(tmp_path_factory.mktemp("kill") / "app", name).write()
    (tiny.root / "web" / "cgi-bin" / "slow4").write_text(SLOW4)
    write_file(tiny, SLOW_DB)
    watch = StateWatch(engine, name)
    watch.start()
    tiny.watch = watch  # type: ignore[attr-defined]
    assert run_cli(tiny.root, "release").returncode == 0
    yield tiny
    watch.stop.set()
    watch.join()
    cleanup(name)


def write_file(app: TinyApp, db: str) -> None:
    # A short watch after the switch, so that a 4 s request is still in flight when the drain starts.
    (app.root / "compose.yaml").write_text(compose_yaml(app.name, app.port, db=db, extra_block="  settle: 1\n"))


def _serves(app: TinyApp, seconds: float = 2.0) -> set[str]:
    """The versions /version answered with, asked again and again for `seconds`: every answer 200."""
    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, body = get(app.url, "/version")
        assert status == 200, (status, body)
        seen.add(body.strip())
        time.sleep(0.05)
    return seen


def _running_db(app: TinyApp, engine) -> set[str]:
    flt = {"label": [f"io.immutdock.app={app.name}", "com.docker.compose.service=db"], "status": "running"}
    return {c["Id"] for c in engine.api.containers(filters=flt)}  # one request: no race with a removal


def _db_runs(app: TinyApp, engine, timeout: float = 60) -> None:
    """Until the db runs, and no db is half-made (created, never started: a recreate cut short)."""
    created = {"label": [f"io.immutdock.app={app.name}", "com.docker.compose.service=db"], "status": "created"}
    deadline = time.monotonic() + timeout
    while not _running_db(app, engine) or engine.api.containers(all=True, filters=created):
        assert time.monotonic() < deadline, "the database does not run again after the kill"
        time.sleep(0.2)


class InFlight(threading.Thread):
    """One slow request (4 s), sent now: its status and body once it ends."""

    def __init__(self, app: TinyApp) -> None:
        super().__init__(daemon=True)
        self.app, self.result = app, None
        self.start()
        self._answering()

    def _answering(self, limit: float = 15) -> None:
        """Until a web container runs the request's `sleep 4` (it is being answered; on a
        loaded machine sending it can take longer than any fixed pause)."""
        import subprocess

        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=io.immutdock.app={self.app.name}",
                                  "--filter", "label=com.docker.compose.service=web"],
                                 capture_output=True, text=True).stdout.split()
            if any("sleep 4" in subprocess.run(["docker", "top", c], capture_output=True, text=True).stdout
                   for c in ids):
                return
            time.sleep(0.05)
        raise AssertionError("the slow request never reached a web container")

    def run(self) -> None:
        try:
            self.result = get(self.app.url, "/cgi-bin/slow4", timeout=30)
        except OSError as exc:
            self.result = (0, type(exc).__name__)


KILLS = [*MOMENTS, "stateful"]
AFTER_SWITCH = ("settle", "drain", "retire", "post-switch")  # the moments past the switch


def _records(app: TinyApp) -> list[dict]:
    return [{**r, "number": int(r["release"][1:])} for r in json_out(run_cli(app.root, "history", "--json"))]


@pytest.mark.parametrize("moment", KILLS)
def test_a_release_killed_at_this_moment_leaves_a_state_the_next_one_finishes(app: TinyApp, engine,
                                                                               moment: str) -> None:
    n = KILLS.index(moment)
    victim_release = f"r{max(r['number'] for r in _records(app)) + 1}"
    version, before = f"k{n}", f"k{n - 1}" if n else "v1"
    app.set_version(version)
    in_flight = None
    if moment == "stateful":  # a new definition of the db: recreated first, stop-first, killed meanwhile
        write_file(app, SLOW_DB + f"\nenvironment: {{GENERATION: '{n}'}}")
        victim = Background(app.root, "release")
        victim.wait_for("changes first")
        created = {"label": [f"io.immutdock.app={app.name}", "com.docker.compose.service=db"], "status": "created"}
        deadline = time.monotonic() + 60
        while not engine.api.containers(all=True, filters=created):  # compose made the new db: it stops the old
            assert time.monotonic() < deadline and victim.proc.poll() is None, "".join(victim.lines)
            time.sleep(0.01)
    elif moment == "drain":  # a request sent to the old color before the switch is in flight
        victim = Background(app.root, "release", env={"IMMUTDOCK_STOP_AT": "record,drain"})
        stopped(victim.proc.pid)
        in_flight = InFlight(app)
        os.kill(victim.proc.pid, signal.SIGCONT)
        time.sleep(0.2)
        stopped(victim.proc.pid)
    else:
        victim = Background(app.root, "release", env={"IMMUTDOCK_STOP_AT": moment})
        stopped(victim.proc.pid)
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.finish()
    # The next release at once while a request is in flight on the old color: it drains it first.
    follow = Background(app.root, "release") if in_flight is not None else None
    assert _serves(app) <= {version, before}
    _db_runs(app, engine)
    assert app.watch.most <= 1, "two databases ran at once"  # type: ignore[attr-defined]
    if follow is None:
        status = json_out(run_cli(app.root, "status", "--json"))
        history = json_out(run_cli(app.root, "history", "--json"))
        assert status["live_release"] in [r["release"] for r in history], (status, history)
        again = run_cli(app.root, "release", "--json")
        assert again.returncode == 0, again.stderr
    else:
        out = follow.finish()
        assert follow.proc.returncode == 0, out
        in_flight.join(timeout=30)
        assert in_flight.result == (200, f"slow4 {before}\n"), in_flight.result
    assert _serves(app, 0.5) == {version}
    assert app.visit().startswith(f"{version} "), "the new version reaches the database"
    history = json_out(run_cli(app.root, "history", "--json"))
    assert "switching" not in [r["outcome"] for r in history], history
    killed = [r["outcome"] for r in history if r["release"] == victim_release]
    if moment in AFTER_SWITCH:  # it served: settled as good
        assert killed == ["ok"], (moment, history)
    elif moment == "switch":  # recorded, killed before its switch: it never served
        assert killed == ["interrupted"], (moment, history)
    status = json_out(run_cli(app.root, "status", "--json"))
    assert status["problem"] is None and not status["half_made"] and not status["not_retired"], status
    assert app.watch.most <= 1 and not app.watch.errors  # type: ignore[attr-defined]
