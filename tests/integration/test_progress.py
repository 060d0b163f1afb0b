"""What a release shows while it works: on a terminal a live region (a row per image, per
service's gate, the watch, the drain, the retire), piped plain timestamped lines."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest

from .support import IMMUTDOCK, TinyApp, run_cli

pytestmark = pytest.mark.engine


def _on_a_terminal(app: TinyApp, *args: str) -> subprocess.CompletedProcess[str]:
    """immutdock run on a pseudo-terminal (script(1)): what a user at a terminal sees."""
    command = shlex.join([*IMMUTDOCK, *args])
    return subprocess.run(["script", "-qefc", command, "/dev/null"], cwd=app.root, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"})


def test_a_release_on_a_terminal_has_a_live_region_and_piped_plain_lines(tiny: TinyApp) -> None:
    piped = run_cli(tiny.root, "release")
    assert piped.returncode == 0, piped.stderr
    assert "\x1b[" not in piped.stderr, piped.stderr
    lines = [ln for ln in piped.stderr.splitlines() if ln.strip()]
    assert all(re.match(r"\[ *\d+\.\d+s\] ", ln) or ln.startswith("warning: ") for ln in lines), lines
    assert any("health: web: 1/1 healthy in the router's check" in ln for ln in lines), lines

    tiny.set_version("v2")
    shown = _on_a_terminal(tiny, "release")
    assert shown.returncode == 0, shown.stdout
    out = shown.stdout
    assert "\x1b[" in out, "the region is redrawn in place"
    for row in ("build web", "health web", "1/1 healthy in the router's check", "watch", "retire",
                "r2 is live on green"):
        assert row in out, (row, out[-3000:])
    assert tiny.visit().startswith("v2 ")


def test_a_container_that_ignores_sigterm_is_named_when_it_is_retired(tiny: TinyApp) -> None:
    """Without an init, busybox httpd is PID 1 and ignores SIGTERM: its retire waits for the
    whole grace period, which the release says (it was silence before)."""
    compose = tiny.root / "compose.yaml"
    text = compose.read_text()
    web = "    build: ./web\n    init: true\n    stop_grace_period: 5s\n"
    assert web in text, text
    compose.write_text(text.replace(web, "    build: ./web\n    stop_grace_period: 2s\n"))
    assert run_cli(tiny.root, "release").returncode == 0
    tiny.set_version("v2")
    proc = run_cli(tiny.root, "release")
    assert proc.returncode == 0, proc.stderr
    assert f"warning: {tiny.name}-blue-web-1 ignored SIGTERM: the engine killed it when its 2 s grace period ended" \
        in proc.stderr, proc.stderr
    assert "still running 1 s after SIGTERM (SIGKILL at 2 s)" in proc.stderr, proc.stderr

    compose.write_text(text)  # with an init, SIGTERM ends it at once: once no container without one is left
    for version in ("v3", "v4"):
        tiny.set_version(version)
        proc = run_cli(tiny.root, "release")
        assert proc.returncode == 0, proc.stderr
    assert "ignored SIGTERM" not in proc.stderr and "after SIGTERM" not in proc.stderr, proc.stderr
