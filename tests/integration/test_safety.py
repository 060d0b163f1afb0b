"""Release safety on a real engine: the gate promotes only what serves, no request runs twice,
the router is never the cause of an outage, a stopped piece is never a no-op.

The app here has no Docker HEALTHCHECK: the router's own checks are the gate's only evidence."""

from __future__ import annotations

import http.client
import subprocess
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from .support import Load, cleanup, free_port, json_out, run_cli

pytestmark = pytest.mark.engine

DOCKERFILE = """\
FROM busybox:latest
COPY . /www
RUN chmod +x /www/cgi-bin/* /www/start
CMD ["/www/start"]
"""
# mode: ok | 500 | 302 | 404 | never (no server at all) | late (starts after a delay)
START = """\
#!/bin/sh
mode=$(cat /www/mode)
[ "$mode" = never ] && exec sleep 3600
[ "$mode" = late ] && sleep 12
exec httpd -f -p 8000 -h /www
"""
# Every check is logged in /tmp/checks; mode slow answers it in 0.6 s (a health endpoint that
# asks a database under load).
HEALTH_CGI = """\
#!/bin/sh
echo . >> /tmp/checks
case "$(cat /www/mode)" in
  slow) sleep 0.6; printf 'Content-Type: text/plain\\r\\n\\r\\nok\\n' ;;
  500) printf 'HTTP/1.0 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nbroken\\n' ;;
  302) printf 'HTTP/1.0 302 Found\\r\\nLocation: /elsewhere\\r\\n\\r\\n' ;;
  404) printf 'HTTP/1.0 404 Not Found\\r\\n\\r\\n' ;;
  *) printf 'Content-Type: text/plain\\r\\n\\r\\nok\\n' ;;
esac
"""
VERSION_CGI = """\
#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'; cat /www/version
"""
# A POST that records itself in a named volume, then takes QUERY_STRING seconds to answer.
POST_CGI = """\
#!/bin/sh
cat > /dev/null
echo "$(hostname) $$" >> /posts/log
sleep "${QUERY_STRING:-0}"
printf 'Content-Type: text/plain\\r\\n\\r\\ndone\\n'
"""


@dataclass
class GateApp:
    root: Path
    name: str
    port: int = field(default_factory=free_port)
    replicas: int = 1
    request_timeout: int = 3

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, mode: str = "ok", version: str = "v1", timeout: int = 6, health_path: str = "/cgi-bin/health",
              rise: int = 2, router_extra: str = "") -> "GateApp":
        web = self.root / "web"
        (web / "cgi-bin").mkdir(parents=True, exist_ok=True)
        for path, text in {"Dockerfile": DOCKERFILE, "start": START, "cgi-bin/health": HEALTH_CGI,
                           "cgi-bin/version": VERSION_CGI, "cgi-bin/post": POST_CGI}.items():
            (web / path).write_text(text)
        (web / "mode").write_text(mode + "\n")
        (web / "version").write_text(version + "\n")
        (self.root / "compose.yaml").write_text(textwrap.dedent(f"""\
            name: {self.name}
            services:
              web:
                build: ./web
                init: true
                stop_grace_period: 3s
                deploy: {{replicas: {self.replicas}}}
                volumes: ["posts:/posts"]
            volumes:
              posts: {{}}
            x-immutdock:
              router:
                service: web
                port: 8000
                publish: "127.0.0.1:{self.port}"
                request_timeout: {self.request_timeout}
                health: {{path: {health_path}, timeout: {timeout}, rise: {rise}}}
            """) + router_extra)
        return self

    def version(self) -> str:
        status, body = request(self.url, "GET", "/cgi-bin/version")
        assert status == 200, (status, body)
        return body.strip()

    def posts(self) -> list[str]:
        proc = subprocess.run(["docker", "run", "--rm", "-v", f"{self.name}_posts:/posts", "busybox:latest",
                               "sh", "-c", "cat /posts/log 2>/dev/null; true"], capture_output=True, text=True,
                              check=True)
        return proc.stdout.splitlines()


def request(url: str, method: str, path: str, timeout: float = 30) -> tuple[int, str]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=b"x" if method == "POST" else None, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def gate_app(tmp_path_factory: pytest.TempPathFactory, engine) -> Iterator[GateApp]:
    import uuid

    name = f"itgate{uuid.uuid4().hex[:6]}"
    app = GateApp(tmp_path_factory.mktemp("gate") / "app", name).write()
    yield app
    cleanup(name)


def test_first_release_without_healthcheck_serves_at_once(gate_app: GateApp) -> None:
    proc = run_cli(gate_app.root, "release")
    assert proc.returncode == 0, proc.stderr
    with Load(gate_app.url, path="/cgi-bin/version") as load:  # no 503 in the first moments
        time.sleep(2)
    assert load.ok > 10 and load.failures == [], load.failures[:5]
    assert gate_app.version() == "v1"


BROKEN = ["never", "500", "302", "404", "late"]


@pytest.mark.parametrize("attempt", [1, 2, 3])
@pytest.mark.parametrize("mode", BROKEN)
def test_a_version_that_does_not_serve_is_never_promoted(gate_app: GateApp, mode: str, attempt: int) -> None:
    gate_app.write(mode=mode, version=f"broken-{mode}")
    try:
        with Load(gate_app.url, path="/cgi-bin/version") as load:
            proc = run_cli(gate_app.root, "release")
        assert proc.returncode == 1, (mode, attempt, proc.stderr)
        assert "previous release is still serving" in proc.stderr, proc.stderr
        assert load.ok > 5 and load.failures == [], (mode, load.failures[:5])
        assert gate_app.version() == "v1"
        assert run_cli(gate_app.root, "status").returncode == 0
    finally:
        gate_app.write(mode="ok", version="v1")


def test_status_fails_when_the_live_color_has_no_healthy_server(gate_app: GateApp, engine) -> None:
    flt = {"label": [f"io.immutdock.app={gate_app.name}", "io.immutdock.role=color"]}
    live = engine.containers.list(filters=flt)
    assert live
    for c in live:
        c.exec_run(["sh", "-c", "echo 500 > /www/mode"])
    try:
        deadline = time.monotonic() + 15
        while True:
            proc = run_cli(gate_app.root, "status", "--json")
            if proc.returncode != 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert proc.returncode == 1, proc.stderr
        assert "no healthy server" in proc.stderr
        assert json_out(proc)["router"]["up"] == 0
    finally:
        for c in live:
            c.exec_run(["sh", "-c", "echo ok > /www/mode"])
    deadline = time.monotonic() + 15
    while run_cli(gate_app.root, "status").returncode != 0:
        assert time.monotonic() < deadline, "the live color came back up"
        time.sleep(0.5)


def test_a_post_slower_than_the_request_timeout_runs_once(gate_app: GateApp) -> None:
    before = len(gate_app.posts())
    status, _ = request(gate_app.url, "POST", "/cgi-bin/post?6")
    assert status == 504
    time.sleep(8)  # anything retried would have run by now
    assert len(gate_app.posts()) == before + 1


def test_a_live_server_is_checked_every_2s_and_a_slow_health_answer_is_no_failure(gate_app: GateApp,
                                                                                   engine) -> None:
    gate_app.write(mode="slow", version="slow")  # every check answers in 0.6 s
    try:
        proc = run_cli(gate_app.root, "release")
        assert proc.returncode == 0, proc.stderr  # the gate passes on checks that take 0.6 s
        flt = {"label": [f"io.immutdock.app={gate_app.name}", "io.immutdock.role=color"]}
        [live] = engine.containers.list(filters=flt)

        def checks() -> int:
            return int(live.exec_run(["sh", "-c", "cat /tmp/checks 2>/dev/null | wc -l"]).output.decode())

        with Load(gate_app.url, path="/cgi-bin/version") as load:
            before, start = checks(), time.monotonic()
            time.sleep(8)
            seen, took = checks() - before, time.monotonic() - start
        assert load.ok > 10 and load.failures == [], load.failures[:5]  # never marked down
        assert gate_app.version() == "slow"
        assert 2 <= seen <= took / 2 + 1, (seen, took)  # one every 2 s once live, not 4 a second
    finally:
        gate_app.write(mode="ok", version="v1")
        assert run_cli(gate_app.root, "release").returncode == 0
    assert gate_app.version() == "v1"


@pytest.fixture
def two_replicas(tmp_path: Path, engine, app_name: str) -> Iterator[GateApp]:
    app = GateApp(tmp_path / "app", app_name, replicas=2, request_timeout=60).write()
    yield app
    cleanup(app_name)


def test_a_post_on_a_killed_replica_runs_once_and_gets_502(two_replicas: GateApp, engine) -> None:
    app = two_replicas
    proc = run_cli(app.root, "release")
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = {}

    def post() -> None:
        result["status"], _ = request(app.url, "POST", "/cgi-bin/post?20")

    client = threading.Thread(target=post)
    client.start()
    deadline = time.monotonic() + 10
    while not app.posts():
        assert time.monotonic() < deadline, "the POST reached no replica"
        time.sleep(0.2)
    host = app.posts()[0].split()[0]
    victim = [c for c in engine.containers.list(filters={"label": f"io.immutdock.app={app.name}"})
              if c.id.startswith(host)]
    assert len(victim) == 1
    victim[0].kill()
    client.join(timeout=30)
    assert result.get("status") == 502
    time.sleep(3)
    assert len(app.posts()) == 1, app.posts()


# -- the router and stateful services are never left down ---------------------------------

def _objects(engine, app: str) -> list[tuple[str, str]]:
    mine = {"label": f"io.immutdock.app={app}"}
    return sorted([(c.id, c.status) for c in engine.containers.list(all=True, filters=mine)] +
                  [(v.name, "volume") for v in engine.volumes.list(filters=mine)])


def test_a_router_address_that_is_taken_is_refused_before_anything_changes(tiny, engine) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        compose = (tiny.root / "compose.yaml").read_text()
        (tiny.root / "compose.yaml").write_text(compose.replace(f"127.0.0.1:{tiny.port}", f"127.0.0.1:{busy}"))
        plan = run_cli(tiny.root, "plan")  # plan says what release will refuse, with its very line
        proc = run_cli(tiny.root, "release")  # a first release: nothing may be left behind
        assert (plan.returncode, proc.returncode) == (1, 1), (plan.stderr, proc.stderr)
        errors = _errors(proc.stderr)
        assert len(errors) == 1 and errors[0].startswith(
            f"error: x-immutdock.router.publish: the router cannot publish 127.0.0.1:{busy} ("), proc.stderr
        assert _errors(plan.stderr) == errors, plan.stderr
        assert [o for o in _objects(engine, tiny.name) if o[1] != "volume"] == []
        assert engine.images.list(filters={"label": f"io.immutdock.app={tiny.name}"}) == [], "refused before building"

        (tiny.root / "compose.yaml").write_text(compose)
        assert run_cli(tiny.root, "release").returncode == 0
        before = _objects(engine, tiny.name)
        tiny.set_version("v2")  # a live app moving to a taken address keeps serving where it is
        (tiny.root / "compose.yaml").write_text(compose.replace(f"127.0.0.1:{tiny.port}", f"127.0.0.1:{busy}"))
        proc = run_cli(tiny.root, "release")
        assert proc.returncode == 1 and "x-immutdock.router.publish" in proc.stderr, proc.stderr
        assert _objects(engine, tiny.name) == before
        assert tiny.visit() == "v1 1"


def _errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def test_a_taken_address_written_in_ports_is_named_there_by_plan_and_release(tmp_path: Path, engine,
                                                                             app_name: str) -> None:
    """An address the router took over from a service's `ports:` is named as that entry, the
    key the user wrote; plan and release say the same line, and release builds nothing."""
    import socket

    root = tmp_path / "app"
    (root / "web").mkdir(parents=True)
    (root / "web" / "Dockerfile").write_text('FROM debian:bookworm-slim\nCMD ["sleep", "infinity"]\n')
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            (root / "compose.yaml").write_text(textwrap.dedent(f"""\
                name: {app_name}
                services:
                  web:
                    build: ./web
                    ports: ["127.0.0.1:{busy}:8000"]
                """))
            plan, proc = run_cli(root, "plan"), run_cli(root, "release")
            assert (plan.returncode, proc.returncode) == (1, 1), (plan.stderr, proc.stderr)
            assert _errors(proc.stderr) == _errors(plan.stderr) == [
                f"error: services.web.ports[0]: the router cannot publish 127.0.0.1:{busy} (listen tcp4 "
                f"127.0.0.1:{busy}: bind: address already in use); free that address, or publish another: "
                '"127.0.0.1:8081:8000"'], proc.stderr
            assert "building" not in proc.stderr, proc.stderr
            assert engine.images.list(filters={"label": f"io.immutdock.app={app_name}"}) == []
            assert engine.containers.list(all=True, filters={"label": f"io.immutdock.app={app_name}"}) == []
    finally:
        cleanup(app_name)


def test_an_address_taken_after_its_check_leaves_no_router_behind(tiny, engine) -> None:
    """Two releases race for one address: the one whose router cannot start removes it again,
    and its next release, once the address is free, succeeds."""
    import os
    import signal
    import socket

    from .support import Background, stopped

    victim = Background(tiny.root, "release", env={"IMMUTDOCK_STOP_AT": "shared"})  # past the address check
    stopped(victim.proc.pid)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", tiny.port))  # another process takes the address meanwhile
        taken.listen()
        os.kill(victim.proc.pid, signal.SIGCONT)
        err = victim.finish()
        assert victim.proc.returncode == 1, err
        assert "address already in use" in err, err
        left = engine.containers.list(all=True, filters={"label": [f"io.immutdock.app={tiny.name}",
                                                                   "io.immutdock.role=router"]})
        assert left == [], [(c.name, c.status) for c in left]
    proc = run_cli(tiny.root, "release")
    assert proc.returncode == 0, proc.stderr
    assert tiny.visit() == "v1 1"


def test_a_stateful_service_gone_from_the_file_is_planned_and_removed_with_its_volume_kept(tiny, engine) -> None:
    assert run_cli(tiny.root, "release").returncode == 0
    assert tiny.visit() == "v1 1"
    compose = (tiny.root / "compose.yaml").read_text()
    # db becomes `store` (reached by the old name through an alias); the volume is the same.
    renamed = compose.replace("\n  db:\n", "\n  store:\n", 1).replace("stateful: [db]", "stateful: [store]").replace(
        '    volumes: ["data:/data"]', '    volumes: ["data:/data"]\n    networks: {default: {aliases: [db]}}', 1)
    assert renamed != compose
    (tiny.root / "compose.yaml").write_text(renamed)
    plan = run_cli(tiny.root, "plan", "--json")
    assert plan.returncode == 0, plan.stderr
    assert json_out(plan)["stateful_removed"] == ["db"], plan.stdout
    human = run_cli(tiny.root, "plan")
    assert "db is no longer in the file: its container is removed, its volumes are kept" in human.stdout, human.stdout
    proc = run_cli(tiny.root, "release")
    assert proc.returncode == 0, proc.stderr
    assert "db is no longer in the file" in proc.stderr
    services = {c.labels.get("com.docker.compose.service") for c in engine.containers.list(
        filters={"label": f"com.docker.compose.project={tiny.name}-state"})}
    assert services == {"store"}
    assert tiny.visit() == "v1 2", "the renamed db kept the volume's data"


def test_a_stopped_router_or_stateful_service_is_never_a_noop(tiny, engine) -> None:
    assert run_cli(tiny.root, "release").returncode == 0
    mine = f"io.immutdock.app={tiny.name}"
    for role in ("router", "state"):
        for c in engine.containers.list(filters={"label": [mine, f"io.immutdock.role={role}"]}):
            c.stop(timeout=2)
        assert run_cli(tiny.root, "status").returncode == 1 or role == "state"
        plan = json_out(run_cli(tiny.root, "plan", "--json"))
        assert plan["noop"] is False and "not running" in plan["reason"], plan
        proc = run_cli(tiny.root, "release")
        assert proc.returncode == 0, proc.stderr
        assert "nothing to release" not in proc.stdout
        assert run_cli(tiny.root, "status").returncode == 0
        assert tiny.visit().startswith("v1 ")
        assert json_out(run_cli(tiny.root, "release", "--json"))["outcome"] == "noop"


def test_a_stateful_change_is_announced_and_named_when_the_release_fails(tiny, engine) -> None:
    first = run_cli(tiny.root, "plan")  # no database yet: it is created, nothing is recreated
    assert f"state  db created in {tiny.name}-state" in first.stdout and "FIRST" not in first.stdout, first.stdout
    proc = run_cli(tiny.root, "release")
    assert proc.returncode == 0 and "changes first" not in proc.stderr, proc.stderr
    compose = (tiny.root / "compose.yaml").read_text()
    (tiny.root / "compose.yaml").write_text(
        compose.replace('volumes: ["data:/data"]', 'volumes: ["data:/data"]\n    environment: {TUNING: "2"}'))
    plan = run_cli(tiny.root, "plan")
    assert "db changes FIRST" in plan.stdout and "db created" not in plan.stdout, plan.stdout
    assert json_out(run_cli(tiny.root, "plan", "--json"))["stateful_changes"] == ["db"]
    tiny.break_health()
    proc = run_cli(tiny.root, "release")
    assert proc.returncode == 1, proc.stderr
    assert "db changes first" in proc.stderr
    assert "but db already runs the new definition" in proc.stderr, proc.stderr
    assert tiny.visit() == "v1 1"
    tiny.fix_health()
    assert json_out(run_cli(tiny.root, "plan", "--json"))["stateful_changes"] == []


def test_releasing_the_rolled_back_file_is_no_noop_while_the_database_runs_a_newer_definition(tiny, engine) -> None:
    """r2 changes db; a rollback to r1 leaves db as r2 made it. Releasing r1's file again then
    brings db back to r1's definition: it is no no-op, though the color runs r1's config."""
    compose_v1 = (tiny.root / "compose.yaml").read_text()
    assert run_cli(tiny.root, "release").returncode == 0
    (tiny.root / "compose.yaml").write_text(
        compose_v1.replace('volumes: ["data:/data"]', 'volumes: ["data:/data"]\n    environment: {TUNING: "2"}'))
    tiny.set_version("v2")
    assert run_cli(tiny.root, "release").returncode == 0
    proc = run_cli(tiny.root, "rollback")
    assert proc.returncode == 0, proc.stderr
    db = {"label": [f"io.immutdock.app={tiny.name}", "com.docker.compose.service=db"]}
    assert "TUNING=2" in engine.containers.list(filters=db)[0].attrs["Config"]["Env"], "rollback left db as it was"
    (tiny.root / "compose.yaml").write_text(compose_v1)
    tiny.set_version("v1")
    plan = json_out(run_cli(tiny.root, "plan", "--json"))
    assert plan["noop"] is False and plan["stateful_changes"] == ["db"], plan
    assert plan["reason"] == "stateful db runs another definition"
    proc = run_cli(tiny.root, "release")
    assert proc.returncode == 0, proc.stderr
    assert "TUNING=2" not in engine.containers.list(filters=db)[0].attrs["Config"]["Env"]
    assert json_out(run_cli(tiny.root, "release", "--json"))["outcome"] == "noop"


def test_the_colors_reach_a_stateful_service_by_every_alias_the_file_gives_it(tiny, engine) -> None:
    compose = (tiny.root / "compose.yaml").read_text()
    (tiny.root / "compose.yaml").write_text(compose.replace(
        'volumes: ["data:/data"]', 'volumes: ["data:/data"]\n    networks: {default: {aliases: [store]}}'))
    visit = tiny.root / "web" / "cgi-bin" / "visit"
    visit.write_text(visit.read_text().replace("http://db:9000", "http://store:9000"))
    proc = run_cli(tiny.root, "release")
    assert proc.returncode == 0, proc.stderr
    assert tiny.visit() == "v1 1"


def _router(engine, app: GateApp):
    found = engine.containers.list(filters={"label": [f"io.immutdock.app={app.name}", "io.immutdock.role=router"]})
    assert len(found) == 1, found
    return found[0]


def test_router_settings_change_by_a_reload_and_only_image_or_address_recreate_it(
        tmp_path: Path, engine, app_name: str) -> None:
    """Health path, rise and request timeout change under load: HAProxy reloads in place (same
    container), no request fails, a slow request in flight finishes, and the new color gets the
    new settings while the live one kept its own. A router image that cannot run is refused
    before the old router goes; a new published address recreates it."""
    app = GateApp(tmp_path / "app", app_name).write()
    try:
        assert run_cli(app.root, "release").returncode == 0
        router = _router(engine, app)
        app.request_timeout = 20
        app.write(version="v2", health_path="/cgi-bin/version", rise=3)
        plan = run_cli(app.root, "plan")
        assert "reloaded with green's new settings (health_path /cgi-bin/health -> /cgi-bin/version, rise 2 -> 3, " \
               "timeout 3 -> 20); no connection is dropped" in plan.stdout, plan.stdout
        slow: list[tuple[int, str]] = []
        in_flight = threading.Thread(target=lambda: slow.append(request(app.url, "POST", "/cgi-bin/post?2")))
        with Load(app.url, path="/cgi-bin/version") as load:
            in_flight.start()
            proc = run_cli(app.root, "release")
            in_flight.join(timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert "HAProxy reloads" in proc.stderr and "recreating" not in proc.stderr, proc.stderr
        assert load.ok > 10 and load.failures == [], load.failures[:5]
        assert slow == [(200, "done\n")]
        assert _router(engine, app).id == router.id, "reloaded, not recreated"
        code, out = _router(engine, app).exec_run(["router-ctl", "settings"])
        settings = dict(line.split("=", 1) for line in out.decode().splitlines())
        assert settings["IMMUTDOCK_GREEN_HEALTH_PATH"] == "/cgi-bin/version"
        assert settings["IMMUTDOCK_BLUE_HEALTH_PATH"] == "/cgi-bin/health", "the old color kept its own"
        assert app.version() == "v2"
        assert request(app.url, "POST", "/cgi-bin/post?5")[0] == 200, "the new request timeout (20 s) applies"

        app.write(version="v3", health_path="/cgi-bin/version", rise=3,
                  router_extra="    image: busybox:latest\n")
        proc = run_cli(app.root, "release")
        assert proc.returncode == 1, proc.stderr
        assert "previous release is still serving" in proc.stderr
        assert _router(engine, app).id == router.id and app.version() == "v2"

        old_url, app.port = app.url, free_port()
        app.write(version="v3", health_path="/cgi-bin/version", rise=3)
        plan = run_cli(app.root, "plan")
        assert "its image or published address changed" in plan.stdout, plan.stdout
        proc = run_cli(app.root, "release")
        assert proc.returncode == 0, proc.stderr
        assert _router(engine, app).id != router.id and app.version() == "v3"
        with pytest.raises(OSError):
            request(old_url, "GET", "/cgi-bin/version", timeout=2)
    finally:
        cleanup(app_name)


@pytest.fixture
def many_replicas(tmp_path: Path, engine, app_name: str) -> Iterator[GateApp]:
    app = GateApp(tmp_path / "app", app_name, replicas=20, request_timeout=60).write(timeout=120)
    yield app
    cleanup(app_name)


def test_twenty_replicas_are_all_routed_and_released_without_a_failed_request(many_replicas: GateApp) -> None:
    """More replicas than the router's default 16 server slots: each color's backend gets one
    slot per replica, and the gate waits for all of them."""
    app = many_replicas
    first = run_cli(app.root, "release")
    assert first.returncode == 0, first.stderr
    report = json_out(run_cli(app.root, "status", "--json"))
    up = [s for s in report["router"]["servers"] if s["color"] == "blue" and s["status"] == "UP"]
    assert len(up) == 20 and report["router"]["up"] == 20, report["router"]

    app.write(version="v2", timeout=120)
    with Load(app.url, clients=3, path="/cgi-bin/version") as load:
        second = run_cli(app.root, "release")
    assert second.returncode == 0, second.stderr
    assert load.failures == [] and load.ok > 10, (load.failures[:5], load.ok)
    report = json_out(run_cli(app.root, "status", "--json"))
    assert report["router"]["up"] == 20 and report["live_color"] == "green", report["router"]
    assert app.version() == "v2"
