"""Operating a released app on the real engine without knowing its colors: ps and ls for two
apps, exec and run with their exit codes and stdin, logs that follow across a release (the old
color's lines, then the new one's), and down: refused while a release holds the lock, asking
first, keeping volumes and (when told) the history, removing volumes only after a verified
backup, leaving another app untouched, and a no-op the second time."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import docker
import pytest

from .support import IMMUTDOCK, Background, TinyApp, cleanup, get, json_out, run_cli

pytestmark = pytest.mark.engine

START = '#!/bin/sh\necho "started $(cat /www/version)"\nexec httpd -f -p 8000 -h /www\n'


def _labelled(client: docker.DockerClient, app: str) -> dict[str, list[str]]:
    """What the engine holds with the app's label."""
    label = {"label": f"io.immutdock.app={app}"}
    return {"containers": sorted(c.name for c in client.containers.list(all=True, filters=label)),
            "networks": sorted(n.name for n in client.networks.list(filters=label)),
            "volumes": sorted(v.name for v in client.volumes.list(filters=label)),
            "images": sorted(t for i in client.images.list(filters=label) for t in i.tags)}


def _piped(root: Path, *args: str, given: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IMMUTDOCK, *args], cwd=root, input=given, capture_output=True, text=True, timeout=300)


def test_ps_ls_exec_run_logs_and_down_on_the_engine(tiny: TinyApp, tmp_path: Path, app_name: str) -> None:
    client = docker.from_env()
    (tiny.root / "web" / "start").write_text(START)
    compose = tiny.root / "compose.yaml"  # a value the records keep as a digest: `run` gets the value
    compose.write_text(compose.read_text().replace("    init: true\n",
                                                   "    init: true\n    environment: {GREETING: hello there}\n", 1))
    other = TinyApp(tmp_path / "other", f"{app_name}b").write()
    try:
        assert run_cli(tiny.root, "release").returncode == 0
        assert run_cli(other.root, "release").returncode == 0

        ps = run_cli(tiny.root, "ps", "--json")
        assert ps.returncode == 0, ps.stderr
        rows = json_out(ps)["containers"]
        assert [(r["role"], r["service"], r["color"], r["release"], r["live"]) for r in rows] == [
            ("router", "router", None, None, False), ("swapped", "web", "blue", "r1", True),
            ("stateful", "db", None, None, False)], rows
        assert rows[0]["ports"] == [f"127.0.0.1:{tiny.port}->8080/tcp"] and rows[1]["health"] == "healthy", rows
        assert "blue*" in run_cli(tiny.root, "ps").stdout
        listed = run_cli(tmp_path, "ls", "--json")  # no compose file there: the local engine
        assert listed.returncode == 0, listed.stderr
        apps = {a["app"]: a for a in json_out(listed)["apps"]}
        for app in (tiny, other):
            assert (apps[app.name]["live_release"], apps[app.name]["health"], apps[app.name]["url"]) == (
                "r1", "serving", app.url), apps

        shown = run_cli(tiny.root, "exec", "web", "cat", "/www/version")
        assert (shown.returncode, shown.stdout) == (0, "v1\n"), shown.stderr
        assert run_cli(tiny.root, "exec", "web", "sh", "-c", "exit 7").returncode == 7
        fed = _piped(tiny.root, "exec", "-i", "web", "sh", "-c", "cat; exit 3", given="fed through\n")
        assert (fed.returncode, fed.stdout) == (3, "fed through\n"), fed.stderr
        assert run_cli(tiny.root, "exec", "db", "cat", "/data/n").returncode == 1  # no visit yet: no file
        on_tty = _on_terminal(tiny.root, "exec", "web", "tty")  # a TTY when stdin is a terminal, unless -T
        assert on_tty.returncode == 0 and "/dev/pts/" in on_tty.stdout, on_tty.stdout  # (stderr shares the pty)
        assert _on_terminal(tiny.root, "exec", "-T", "web", "tty").returncode == 1
        assert run_cli(tiny.root, "exec", "--index", "2", "web", "true").returncode == 2
        assert run_cli(tiny.root, "exec", "nosuch", "true").returncode == 2
        once = _piped(tiny.root, "run", "web", "sh", "-c", "cat /www/version; cat; echo $GREETING; exit 5",
                      given="typed\n")
        assert (once.returncode, once.stdout) == (5, "v1\ntyped\nhello there\n"), once.stderr  # the value itself
        assert [c.name for c in client.containers.list(all=True, filters={"label": f"io.immutdock.app={tiny.name}"})
                if "-run-" in c.name] == []  # the one-off is gone
        refused = run_cli(tiny.root, "run", "db", "true")
        assert refused.returncode == 2 and "stateful" in refused.stderr, refused.stderr

        router = run_cli(tiny.root, "logs", "--router", "--tail", "2", "db")
        assert router.returncode == 0 and router.stdout.startswith("router "), router.stdout
        follow = Background(tiny.root, "logs", "-f", "--json", "web")
        try:
            _wait_for_line(follow, "started v1")
            tiny.set_version("v2")
            assert run_cli(tiny.root, "release").returncode == 0
            _wait_for_line(follow, "started v2")
            green = client.containers.get(f"{tiny.name}-green-web-1")
            green.restart(timeout=1)  # a container that starts again is read again, from its new start
            _wait_for_line(follow, "started v2", count=2)
        finally:
            follow.proc.send_signal(2)  # Ctrl-C ends a follow
            follow.finish()
        assert follow.proc.returncode == 0, follow.lines
        seen = [json.loads(line) for line in _rest(follow).splitlines()]
        started = [(s["color"], s["release"], s["line"]) for s in seen if s["line"].startswith("started")]
        assert started == [("blue", "r1", "started v1"), ("green", "r2", "started v2"),
                           ("green", "r2", "started v2")], seen
        head = subprocess.Popen([*IMMUTDOCK, "logs", "-f"], cwd=tiny.root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # `immutdock logs -f | head -1`
        assert head.stdout.readline()
        head.stdout.close()  # what read it has what it wanted: the follow ends quietly at its next line
        green.restart(timeout=1)
        assert head.wait(timeout=60) == 0 and "Traceback" not in head.stderr.read()

        tiny.set_start_delay(6)  # a release that holds the lock while its new color starts
        tiny.set_version("v3")
        busy = Background(tiny.root, "release")
        try:
            busy.wait_for("starting", timeout=120)
            held = run_cli(tiny.root, "down", "--yes")
            assert held.returncode == 2 and "lock" in held.stderr, held.stderr
        finally:
            assert busy.proc.wait(timeout=300) == 0, busy.finish()
        tiny.set_start_delay(0)
        assert get(tiny.url, "/version")[1].strip() == "v3"

        declined = _on_terminal(tiny.root, "down", given="n\n")  # on a terminal it asks first
        assert declined.returncode == 2 and "go ahead?" in declined.stdout, declined.stdout
        asked = run_cli(tiny.root, "down")  # stdin is not a terminal: nothing is removed without --yes
        assert asked.returncode == 2 and "--yes" in asked.stderr, asked.stderr
        assert tiny.visit() == "v3 1"
        gone = run_cli(tiny.root, "down", "--yes", "--keep-history", "--json")
        assert gone.returncode == 0, gone.stderr
        assert json_out(gone)["removed"]["records"] == 0
        assert _labelled(client, tiny.name) == {"containers": [], "networks": [], "images": [],
                                                "volumes": sorted([f"{tiny.name}_data"] + _records(client, tiny))}
        assert get(other.url, "/version")[0] == 200 and _labelled(client, other.name)["containers"]  # untouched
        assert run_cli(tiny.root, "release").returncode == 0  # the numbering goes on, the data stayed
        assert [r["release"] for r in json_out(run_cli(tiny.root, "history", "--json"))][-1] == "r4"
        assert tiny.visit() == "v3 2"

        backups = tmp_path / "backups"
        data = run_cli(tiny.root, "down", "--yes", "--volumes", "--backup-to", str(backups), "--json")
        assert data.returncode == 0, data.stderr
        made = json_out(data)
        assert [(b["volume"], b["verified"]) for b in made["backups"]] == [("data", True)], made
        assert Path(made["backups"][0]["archive"]).is_file() and made["removed"]["volumes"] == [f"{tiny.name}_data"]
        assert _labelled(client, tiny.name) == {"containers": [], "networks": [], "images": [], "volumes": []}
        again = run_cli(tiny.root, "down", "--yes", "--json")
        assert again.returncode == 0 and json_out(again)["outcome"] == "nothing to remove", again.stdout
        assert run_cli(tiny.root, "release").returncode == 0
        assert [r["release"] for r in json_out(run_cli(tiny.root, "history", "--json"))] == ["r1"]
        assert tiny.visit() == "v3 1"  # a fresh volume
        assert get(other.url, "/version")[0] == 200
    finally:
        cleanup(other.name)
        client.close()


def _on_terminal(root: Path, *args: str, given: str = "") -> subprocess.CompletedProcess[str]:
    """immutdock with a pseudo-terminal as its stdin and stdout (script(1)); its exit code."""
    return subprocess.run(["script", "-qec", shlex.join([*IMMUTDOCK, *args]), "/dev/null"], cwd=root, input=given,
                          capture_output=True, text=True, timeout=120)


def _records(client: docker.DockerClient, app: TinyApp) -> list[str]:
    return [v.name for v in client.volumes.list(filters={"label": [f"io.immutdock.app={app.name}",
                                                                    "io.immutdock.role=record"]})]


def _rest(follow: Background) -> str:
    """All the follow printed (after it ended)."""
    import os

    fd = follow.proc.stdout.fileno()
    os.set_blocking(fd, True)
    with os.fdopen(os.dup(fd), "rb") as rest:
        return getattr(follow, "seen", "") + rest.read().decode()


def _wait_for_line(follow: Background, text: str, timeout: float = 120, count: int = 1) -> None:
    """Until the follow printed a line holding `text` (its stdout read as it comes)."""
    import os
    import select

    deadline = time.monotonic() + timeout
    fd = follow.proc.stdout.fileno()
    os.set_blocking(fd, False)
    buf = getattr(follow, "seen", "")
    while buf.count(text) < count:
        assert time.monotonic() < deadline and follow.proc.poll() is None, (buf, follow.lines)
        if select.select([fd], [], [], 0.2)[0]:
            buf += os.read(fd, 65536).decode()
    follow.seen = buf  # type: ignore[attr-defined]
