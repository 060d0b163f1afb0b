"""The gate runs a starting container's own health check itself: a Debian app whose engine
check runs only every 60 s is released in seconds, on the same evidence (its check's command,
run in it as the engine runs it: its user, its environment, CMD-SHELL in its shell), and a
check that fails keeps the old version serving."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import yaml

from .support import DEBIAN_APPS, cleanup, free_port, get, json_out, run_cli

pytestmark = pytest.mark.engine

# Passes only as the engine would run it: as the service's user, with its environment.
CHECK = ('[ "$$(id -u)" = 65534 ] && [ "$$CHECK_TOKEN" = expected ] && python3 -c '
         '"import urllib.request; urllib.request.urlopen(\'http://127.0.0.1:8000/healthz\', timeout=2)"')


def _write(root: Path, name: str, port: int, version: str, token: str = "expected") -> None:
    (root / "www").mkdir(parents=True, exist_ok=True)
    (root / "www" / "healthz").write_text("ok\n")
    (root / "www" / "version").write_text(version + "\n")
    (root / "Dockerfile").write_text(DEBIAN_APPS + "COPY www /srv/www\n")
    (root / "compose.yaml").write_text(yaml.safe_dump({
        "name": name,
        "services": {"web": {
            "build": ".", "command": ["python3", "-m", "http.server", "8000", "--directory", "/srv/www"],
            "init": True, "user": "65534", "environment": {"CHECK_TOKEN": token},
            "healthcheck": {"test": ["CMD-SHELL", CHECK], "interval": "60s", "timeout": "5s", "retries": 3},
            "stop_grace_period": "3s"}},
        "x-immutdock": {"router": {"service": "web", "port": 8000, "publish": f"127.0.0.1:{port}",
                                   "health": {"path": "/healthz", "timeout": 15}},
                        "settle": 1},
    }))


@pytest.fixture
def debian_app(tmp_path: Path, engine, app_name: str) -> Iterator[tuple[Path, str, int]]:
    root, port = tmp_path / "app", free_port()
    yield root, app_name, port
    cleanup(app_name)


def test_a_check_the_engine_runs_every_60s_gates_a_release_in_seconds(debian_app: tuple[Path, str, int],
                                                                     engine) -> None:
    root, name, port = debian_app
    _write(root, name, port, "v1")
    proc = run_cli(root, "release", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json_out(proc)["timings"]["gate"] < 12
    [live] = engine.containers.list(filters={"label": [f"io.immutdock.app={name}", "io.immutdock.role=color"]})
    assert live.attrs["State"]["Health"]["Status"] == "starting"  # the engine has not checked it yet
    assert get(f"http://127.0.0.1:{port}", "/version")[1].strip() == "v1"

    # The router's check passes, the container's own does not (its environment is not what it
    # checks): no evidence, and the engine's first check is a minute away. v1 keeps serving.
    _write(root, name, port, "v2", token="other")
    proc = run_cli(root, "release")
    assert proc.returncode == 1, proc.stderr
    assert "not healthy after 15s" in proc.stderr and "starting" in proc.stderr, proc.stderr
    assert get(f"http://127.0.0.1:{port}", "/version")[1].strip() == "v1"


def _held(engine, name: str) -> dict[str, set[bool]]:
    """Per color, whether its server slots are held in maintenance by an admin command (HAProxy's
    `show servers state`: bit 0x1 of srv_admin_state), in the app's router."""
    [router] = engine.containers.list(filters={"label": [f"io.immutdock.app={name}", "io.immutdock.role=router"]})
    code, out = router.exec_run(["sh", "-c", 'echo "show servers state" | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock'])
    assert code == 0, out
    held: dict[str, set[bool]] = {}
    for line in out.decode().splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[1] in ("blue", "green") and fields[3].startswith("s"):
            held.setdefault(fields[1], set()).add(bool(int(fields[6]) & 1))
    return held


def test_between_releases_the_idle_colors_servers_are_held_and_the_live_colors_are_not(
        debian_app: tuple[Path, str, int], engine) -> None:
    """A new container's name resolves while the engine still starts it: the router must not
    check it before it runs (its first ARP request would go unanswered, and the kernel asks
    again only a second later). A held slot in the live color would take no request."""
    root, name, port = debian_app
    for version, live, idle in (("v1", "blue", "green"), ("v2", "green", "blue")):
        _write(root, name, port, version)
        proc = run_cli(root, "release", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json_out(proc)["color"] == live
        assert _held(engine, name) == {live: {False}, idle: {True}}
        assert get(f"http://127.0.0.1:{port}", "/version")[1].strip() == version
