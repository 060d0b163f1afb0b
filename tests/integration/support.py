"""Helpers for integration tests: tiny busybox apps, the CLI as a user types it, cleanup."""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from immutdock.apply.build import is_pin
from immutdock.errors import EngineError
from immutdock.gateways.engine import Engine

IMMUTDOCK = [sys.executable, "-m", "immutdock"]
# Debian 12 with its nginx, Python and redis: one apt layer, built once and cached for every test.
DEBIAN_APPS = """\
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx python3 redis-server \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
"""


_GIVEN: set[int] = set()


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768-60999): an outgoing connection's
    source port can never take it between now and the moment the router publishes it, and this
    run never gives it twice."""
    while True:
        port = random.randint(20000, 32000)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port


def run_cli(cwd: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IMMUTDOCK, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


L = TypeVar("L", bound="Looping")


class Looping:
    """A thread that runs `_run` (looping until `_stop` is set) during a `with` block."""

    join_timeout = 15.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self: L) -> L:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.join_timeout)


class Background:
    """An immutdock command (`release` unless named) running in its own session, its
    progress (stderr) read as it comes."""

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([*IMMUTDOCK, *(args or ("release",))], cwd=root, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True,
                                     env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stderr.readline, "")),
                                        daemon=True)
        self._reader.start()

    def wait_for(self, marker: str, timeout: float = 180, count: int = 1) -> None:
        """Until `count` lines of stderr hold `marker`."""
        deadline = time.monotonic() + timeout
        while sum(marker in line for line in list(self.lines)) < count:
            assert time.monotonic() < deadline and self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.05)

    def finish(self, timeout: float = 180) -> str:
        """Wait for the exit; all it wrote on stderr."""
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return "".join(self.lines)


def stopped(pid: int, timeout: float = 180) -> None:
    """Until process `pid` stopped itself (state T, e.g. at an IMMUTDOCK_STOP_AT moment)."""
    deadline = time.monotonic() + timeout
    while True:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] == "T":
                return
        assert time.monotonic() < deadline, f"immutdock never reached its stop (pid {pid})"
        time.sleep(0.02)


def json_out(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.stdout.strip(), f"no JSON on stdout; stderr:\n{proc.stderr}"
    return json.loads(proc.stdout)


def get(url: str, path: str, timeout: float = 5, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    """GET on a new connection: an http:// URL, or https:// with `context` to verify it."""
    host, port = url.split("://")[-1].split(":")
    conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context) if context \
        else http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


WEB_DOCKERFILE = """\
ARG BASE=busybox:latest
FROM ${BASE}
COPY . /www
RUN chmod +x /www/cgi-bin/* /www/start
CMD ["/www/start"]
"""
# start: optional delay before serving (a slow start keeps a release mid-way for tests)
WEB_START = """\
#!/bin/sh
sleep "$(cat /www/startdelay 2>/dev/null || echo 0)"
exec httpd -f -p 8000 -h /www
"""
VISIT_CGI = """\
#!/bin/sh
echo "Content-Type: text/plain"; echo
echo "$(cat /www/version) $(wget -q -O- http://db:9000/cgi-bin/incr)"
"""
# a request that is in flight while a release switches and drains (2 s < web's 5 s grace period)
SLOW_CGI = """\
#!/bin/sh
sleep 2
echo "Content-Type: text/plain"; echo
echo "slow $(cat /www/version)"
"""
def write_web(folder: Path, files: dict[str, str], version: str = "v1") -> Path:
    """A busybox web service's build context: httpd on 8000 serving `files` (paths under the
    context, e.g. "cgi-bin/visit") and a `version` file."""
    (folder / "cgi-bin").mkdir(parents=True, exist_ok=True)
    for path, text in {"Dockerfile": WEB_DOCKERFILE, "start": WEB_START, **files, "version": f"{version}\n"}.items():
        (folder / path).write_text(text)
    return folder


DB_DOCKERFILE = """\
FROM busybox:latest
COPY cgi-bin /www/cgi-bin
RUN chmod +x /www/cgi-bin/*
CMD ["httpd", "-f", "-p", "9000", "-h", "/www"]
"""
INCR_CGI = """\
#!/bin/sh
echo "Content-Type: text/plain"; echo
n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo $n
"""


TINY_DB = 'build: ./db\ninit: true\nvolumes: ["data:/data"]'


def compose_yaml(name: str, port: int, health_timeout: int = 30, extra_block: str = "", db: str = TINY_DB,
                 volume: str = "data") -> str:
    """The tiny app's file; `db` the stateful db's definition, `volume` the one named volume. Its
    watch after the switch is 1 s (test_settle.py and test_safety.py test the watch itself)."""
    db_lines = textwrap.indent(db, " " * 12).strip()  # under `db:`, before the dedent
    return textwrap.dedent(f"""\
        name: {name}
        services:
          web:
            build: ./web
            init: true
            stop_grace_period: 5s
            healthcheck:
              test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000/healthz"]
              interval: 1s
              retries: 2
              start_period: 10s
          db:
            {db_lines}
        volumes:
          {volume}: {{}}
        x-immutdock:
          router:
            service: web
            port: 8000
            publish: "127.0.0.1:{port}"
            health: {{path: /healthz, timeout: {health_timeout}}}
          stateful: [db]
          keep: 3
        """) + ("" if "settle:" in extra_block else "  settle: 1\n") + extra_block


@dataclass
class TinyApp:
    """A busybox web service (CGI) plus a stateful busybox 'db' keeping a counter in a volume."""

    root: Path
    name: str
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, version: str = "v1", health_timeout: int = 30) -> "TinyApp":
        web, db = self.root / "web", self.root / "db"
        (web / "cgi-bin").mkdir(parents=True, exist_ok=True)
        (db / "cgi-bin").mkdir(parents=True, exist_ok=True)
        (web / "Dockerfile").write_text(WEB_DOCKERFILE)
        (web / "start").write_text(WEB_START)
        (web / "cgi-bin" / "visit").write_text(VISIT_CGI)
        (web / "cgi-bin" / "slow").write_text(SLOW_CGI)
        (web / "healthz").write_text("ok\n")
        (web / "version").write_text(version + "\n")
        (db / "Dockerfile").write_text(DB_DOCKERFILE)
        (db / "cgi-bin" / "incr").write_text(INCR_CGI)
        (self.root / "compose.yaml").write_text(compose_yaml(self.name, self.port, health_timeout))
        return self

    def set_version(self, version: str) -> None:
        (self.root / "web" / "version").write_text(version + "\n")

    def set_start_delay(self, seconds: float) -> None:
        (self.root / "web" / "startdelay").write_text(f"{seconds}\n")

    def break_health(self) -> None:
        (self.root / "web" / "healthz").unlink()  # httpd then answers 404

    def fix_health(self) -> None:
        (self.root / "web" / "healthz").write_text("ok\n")

    def visit(self) -> str:
        status, body = get(self.url, "/cgi-bin/visit")
        assert status == 200, (status, body)
        return body.strip()


class StateWatch(threading.Thread):
    """Counts running containers of a stateful service (`db` unless named), the whole module long."""

    def __init__(self, engine, app: str, service: str = "db") -> None:
        super().__init__(daemon=True)
        self.engine, self.app, self.service = engine, app, service
        self.most = 0
        self.ids: set[str] = set()
        self.errors: list[str] = []  # what the engine answered instead of a list (the watch went on)
        self.stop = threading.Event()

    def run(self) -> None:
        flt = {"label": [f"io.immutdock.app={self.app}", f"com.docker.compose.service={self.service}"],
               "status": "running"}
        while not self.stop.is_set():
            try:
                found = self.engine.api.containers(filters=flt)  # one request: no race with a removal
            except Exception as exc:  # noqa: BLE001 - counted, never a reason to stop watching
                self.errors.append(repr(exc))
                found = []
            self.most = max(self.most, len(found))
            self.ids.update(c["Id"] for c in found)
            time.sleep(0.1)


class Load:
    """Back-to-back GETs on a new connection each, counting failures (for zero-downtime checks).
    `slow` more clients ask `slow_path`, requests still in flight when traffic switches.
    `fetch(url, path)` -> (status, body) asks once (default: `get`, plain HTTP). Each request of
    the fast clients is kept in `samples`: (sent, ended, ok, body or error)."""

    def __init__(self, url: str, clients: int = 3, path: str = "/version", slow: int = 0,
                 slow_path: str = "/cgi-bin/slow",
                 fetch: Callable[[str, str], tuple[int, str]] | None = None) -> None:
        self.url = url
        self.fetch = fetch or (lambda url, path: get(url, path, timeout=10))
        self.ok = 0
        self.slow_ok = 0
        self.failures: list[str] = []
        self.samples: list[tuple[float, float, bool, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(path, False), daemon=True) for _ in range(clients)]
        self._threads += [threading.Thread(target=self._run, args=(slow_path, True), daemon=True) for _ in range(slow)]

    def _run(self, path: str, slow: bool) -> None:
        deadline = time.monotonic() + 600
        while not self._stop.is_set() and time.monotonic() < deadline:
            sent = time.monotonic()
            body = ""
            try:
                status, body = self.fetch(self.url, path)
                result = None if status == 200 else f"{path}: status {status}"
            except (OSError, http.client.HTTPException) as exc:  # a response cut short is a failure too
                result = f"{path}: {type(exc).__name__}"
            with self._lock:
                if not slow:
                    self.samples.append((sent, time.monotonic(), result is None, body.strip() if result is None
                                         else result))
                if result is None and slow:
                    self.slow_ok += 1
                elif result is None:
                    self.ok += 1
                else:
                    self.failures.append(result)

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def failing_windows(self) -> list[float]:
        """The seconds each run of failed requests (no success sent in between) lasted: from
        the moment its first request was sent to the moment its last one was. (How long each
        failed request itself took is in `samples`.)"""
        windows: list[float] = []
        run: list[float] = []
        for sent, _ended, ok, _ in sorted(self.samples):
            if ok and run:
                windows.append(run[-1] - run[0])
                run = []
            elif not ok:
                run.append(sent)
        if run:
            windows.append(run[-1] - run[0])
        return windows


def _remove_network(engine: Engine, net: Any) -> None:
    """Remove a network the way immutdock does, waiting out endpoints the engine is still
    detaching from containers just removed. An endpoint the engine keeps with no container
    left on the network is the engine's own leak (only a restart of dockerd frees it): warned
    of, not the test's failure."""
    try:
        engine.remove_network(net.name, net.id)
    except EngineError as exc:
        net.reload()
        if net.attrs.get("Containers") or "active endpoints" not in str(exc):
            raise
        warnings.warn(f"the engine keeps a stale endpoint on network {net.name} (no container is attached): {exc}")


def cleanup(app: str) -> None:
    """Remove everything the app made, found by label (and compose's project labels)."""
    import docker
    import docker.errors

    client = docker.from_env()
    label = f"io.immutdock.app={app}"
    projects = [f"{app}-{role}" for role in ("blue", "green", "state", "router", "test", "hook")]
    # Sparse lists and a missing container passed over: the engine removes one whose creation a
    # killed client cancelled, between the list and its removal here.
    containers = client.containers.list(all=True, sparse=True, filters={"label": label})
    for project in projects:
        containers += client.containers.list(all=True, sparse=True,
                                             filters={"label": f"com.docker.compose.project={project}"})
    for c in {c.id: c for c in containers}.values():
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:  # "removal of container ... is already in progress"
            if exc.status_code != 409:
                raise
    engine = Engine()
    for project in projects:
        for net in client.networks.list(filters={"label": f"com.docker.compose.project={project}"}):
            _remove_network(engine, net)
    for net in client.networks.list(filters={"label": label}):
        _remove_network(engine, net)
    for vol in client.volumes.list(filters={"label": label}):
        vol.remove(force=True)
    for image in client.images.list(filters={"label": label}):
        for tag in image.tags:
            client.images.remove(tag, force=True)
    # Pulled images the app pinned carry no label of its own: found by their tags (a plain list:
    # other tests clean up at the same time).
    for image in client.api.images(filters={"reference": f"{app}-*"}):
        for tag in image.get("RepoTags") or []:
            if is_pin(app, tag):
                try:
                    client.images.remove(tag)
                except docker.errors.NotFound:
                    pass
    client.close()


class EngineLink:
    """A unix-socket relay between immutdock (DOCKER_HOST=self.host) and the real engine, which
    a test can cut: `cut()` drops every connection open now; `refuse()` also drops new ones
    until `restore()`. It makes lost connections of the engine API happen at a chosen step."""

    def __init__(self, engine_socket: str = "/var/run/docker.sock") -> None:
        import tempfile

        self._folder = tempfile.mkdtemp(prefix="immutdock-link-")  # short: unix socket paths are
        self.path = os.path.join(self._folder, "engine.sock")  # limited to 107 bytes
        self.host = f"unix://{self.path}"
        self._engine = engine_socket
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._refusing = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._refusing.is_set():
                client.close()
                continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self._engine)
            with self._lock:
                self._pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def cut(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def refuse(self) -> None:
        self._refusing.set()
        self.cut()

    def restore(self) -> None:
        self._refusing.clear()

    def close(self) -> None:
        import shutil

        self._server.close()
        self.cut()
        shutil.rmtree(self._folder, ignore_errors=True)
