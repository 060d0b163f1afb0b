"""The watch after the switch: a version that dies seconds after its gate is switched back at
once, under load, and the release fails; a worker that ends is a failed release."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

from .support import Load, cleanup, free_port, get, json_out, run_cli

pytestmark = pytest.mark.engine

DOCKERFILE = """\
FROM busybox:latest
COPY . /www
RUN chmod +x /www/start
CMD ["/www/start"]
"""
# Serves; with a `dieafter` file, exits 3 that many seconds after it started.
START = """\
#!/bin/sh
httpd -f -p 8000 -h /www &
die=$(cat /www/dieafter 2>/dev/null || echo 0)
[ "$die" = 0 ] && wait
sleep "$die"
exit 3
"""


def compose(name: str, port: int, worker: str) -> str:
    return textwrap.dedent(f"""\
        name: {name}
        services:
          web:
            build: ./web
            init: true
            stop_grace_period: 3s
          worker:
            image: debian:bookworm-slim
            init: true
            command: ["bash", "-c", {worker!r}]
        x-immutdock:
          router:
            service: web
            port: 8000
            publish: "127.0.0.1:{port}"
            health: {{path: /healthz, timeout: 30}}
          settle: 10
        """)


@pytest.fixture
def app(tmp_path: Path, engine, app_name: str) -> Iterator[tuple[Path, str, int]]:
    root = tmp_path / "app"
    (root / "web").mkdir(parents=True)
    for name, text in {"Dockerfile": DOCKERFILE, "start": START, "healthz": "ok\n", "version": "v1\n"}.items():
        (root / "web" / name).write_text(text)
    port = free_port()
    (root / "compose.yaml").write_text(compose(app_name, port, "exec sleep infinity"))
    yield root, app_name, port
    cleanup(app_name)


def test_a_version_that_dies_after_its_gate_is_switched_back_under_load(app, engine) -> None:
    root, name, port = app
    first = run_cli(root, "release", "--json")
    assert first.returncode == 0, first.stderr
    (root / "web" / "version").write_text("v2\n")
    (root / "web" / "dieafter").write_text("6\n")  # passes its gate, then exits 3
    with Load(f"http://127.0.0.1:{port}") as load:
        time.sleep(0.5)
        second = run_cli(root, "release", "--json")
        time.sleep(1)
    assert second.returncode == 1, second.stderr
    error = json_out(second)
    assert "after the switch" in error["error"] and "exited with code 3" in error["error"], error
    assert "switched back" in second.stderr and "serves the previous release again" in error["hint"]
    bodies = [s[3] for s in load.samples if s[2]]
    assert "v2" in bodies, "the new version never served: the test did not reach the switch"
    assert bodies[-1] == "v1"
    windows = load.failing_windows()
    t0 = load.samples[0][0]
    failed = [(round(a - t0, 3), round(b - a, 3), body) for a, b, ok, body in sorted(load.samples) if not ok]
    print("failed requests (sent at, took, what):", failed, "windows:", windows, second.stderr)
    # The old color is the new one's fallback during the watch: a request the dying version
    # refuses waits HAProxy's 1 s turn-around, then the old version answers it. Only a response
    # it had begun to send when it died is lost (cut short: nothing can answer it again), at
    # most one per client.
    cut = [f for f in failed if f[2].endswith(("IncompleteRead", "RemoteDisconnected"))]
    assert len(cut) <= 3 and len(failed) == len(cut) and max(windows, default=0.0) < 1.0, (windows, failed)
    slowest = max(b - a for a, b, _ok, _body in load.samples)
    assert slowest < 3, slowest
    history = json_out(run_cli(root, "history", "--json"))
    assert [(r["release"], r["outcome"]) for r in history] == [("r1", "ok"), ("r2", "rolled-back")]
    assert "no fallback" not in second.stderr, second.stderr
    left = engine.containers.list(all=True, filters={"label": f"com.docker.compose.project={name}-green"})
    assert not left, [c.name for c in left]
    assert run_cli(root, "status").returncode == 0
    (root / "web" / "dieafter").unlink()
    with Load(f"http://127.0.0.1:{port}") as load:
        again = run_cli(root, "release", "--json")
    assert again.returncode == 0, again.stderr
    assert json_out(again)["release"] == "r3"
    assert load.ok > 5 and not load.failures, load.failures[:5]
    # The fallback lasts the watch only: no backup server is left in the router.
    router = engine.containers.list(filters={"label": [f"io.immutdock.app={name}", "io.immutdock.role=router"]})[0]
    stat = router.exec_run(["router-ctl", "stat"]).output.decode()
    header = stat.lstrip("# ").splitlines()[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in stat.lstrip("# ").splitlines()[1:] if line]
    assert not [r["svname"] for r in rows if r.get("bck") == "1"], stat


def test_a_worker_that_ends_is_a_failed_release(app, engine) -> None:
    root, name, port = app
    assert run_cli(root, "release").returncode == 0
    (root / "compose.yaml").write_text(compose(name, port, "sleep 3; exit 0"))
    second = run_cli(root, "release", "--json")
    assert second.returncode == 1, second.stderr
    assert "worker" in json_out(second)["error"], second.stdout
    status, body = get(f"http://127.0.0.1:{port}", "/version")
    assert (status, body.strip()) == (200, "v1")
    history = json_out(run_cli(root, "history", "--json"))
    assert history[-1]["outcome"] in ("failed", "rolled-back"), history
