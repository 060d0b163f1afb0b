"""`immutdock release --target cluster` on the run's Swarm of three test hosts: the router a
global stack publishing on every node, each release a color's stack beside the live one,
gated in every router, switched in all of them, the old color's stack removed; the history in
the cluster."""

from __future__ import annotations

import json
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from .support import Load, json_out, run_cli
from .swarm import SwarmHosts

pytestmark = pytest.mark.engine


def _write(root: Path, name: str, version: str, nodes: list[str], command: str = "", health: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    command = command or f'echo {version} > /tmp/index.html; exec httpd -f -p 8000 -h /tmp'
    health = f"healthcheck: {{test: {json.dumps(['CMD', 'sh', '-c', health])}, interval: 1s, retries: 2}}" \
        if health else ""
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        services:
          web:
            image: busybox:latest
            command: ["sh", "-c", {json.dumps(command)}]
            {health}
            deploy:
              replicas: 2
        x-immutdock:
          router:
            service: web
            port: 8000
            publish: 8080
          settle: 1
          targets:
            cluster:
              swarm:
                manager: {nodes[0]}
                nodes: [{", ".join(nodes)}]
        """))
    return root


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode().strip()


def _cleanup(swarm: SwarmHosts, app: str) -> None:
    first = swarm.hosts[0]
    for role in ("blue", "green", "state", "router"):
        first.docker("stack", "rm", f"{app}-{role}", check=False)
    for host in swarm.hosts:
        host.sh(f"for i in $(seq 60); do [ -z \"$(docker ps -aq --filter label=io.immutdock.app={app})\" ] && break; "
                "sleep 0.5; done; true")
    first.docker("network", "rm", f"{app}_immutdock", check=False)
    swarm.remove_configs(app)


def test_a_release_and_the_next_serve_on_every_node(swarm: SwarmHosts, app_name: str, tmp_path: Path) -> None:
    swarm.load("busybox:latest")
    nodes = [h.url for h in swarm.hosts]
    try:
        root = _write(tmp_path / "app", app_name, "v1", nodes)
        first = run_cli(root, "release", "--target", "cluster", "--json", env=swarm.env)
        assert first.returncode == 0, first.stderr
        assert [_get(h.app_url) for h in swarm.hosts] == ["v1"] * 3
        _write(tmp_path / "app", app_name, "v2", nodes)
        # Under load on every node: no request fails, and once a node answered v2 it never
        # answers v1 again (each node's router switched once, atomically).
        loads = [Load(h.app_url, clients=2, path="/") for h in swarm.hosts]
        for load in loads:
            load.__enter__()
        try:
            second = run_cli(root, "release", "--target", "cluster", "--json", env=swarm.env)
            time.sleep(1)
        finally:
            for load in loads:
                load.__exit__(None, None, None)
        assert second.returncode == 0, second.stderr
        for host, load in zip(swarm.hosts, loads):
            assert not load.failures and load.ok > 20, (host.container, load.failures[:5], load.ok)
            assert {body for *_t, body in load.samples} == {"v1", "v2"}
            first_new = min(ended for _sent, ended, _ok, body in load.samples if body == "v2")
            late = [sent - first_new for sent, _ended, _ok, body in load.samples if body == "v1" and sent > first_new]
            assert not late, (host.container, late[:5])  # nothing sent after v2 answered got v1
        assert json_out(second)["hosts"][0]["color"] == "green"
        assert [_get(h.app_url) for h in swarm.hosts] == ["v2"] * 3
        left = swarm.hosts[0].docker("stack", "ls", "--format", "{{.Name}}").stdout.split()
        assert f"{app_name}-blue" not in left and f"{app_name}-green" in left, left

        # A version whose tasks keep failing: exit 1 naming the service and the task's error,
        # its stack removed, the previous release still serving on every node.
        _write(tmp_path / "app", app_name, "v3", nodes, command="echo v3 cannot start >&2; exit 3")
        failed = run_cli(root, "release", "--target", "cluster", env=swarm.env)
        assert failed.returncode == 1, failed.stderr
        assert f"service {app_name}-blue_web" in failed.stderr and "non-zero exit (3)" in failed.stderr, failed.stderr
        assert [_get(h.app_url) for h in swarm.hosts] == ["v2"] * 3
        left = swarm.hosts[0].docker("stack", "ls", "--format", "{{.Name}}").stdout.split()
        assert f"{app_name}-blue" not in left, left

        # A version whose health check fails: exit 1, the previous release still serving.
        _write(tmp_path / "app", app_name, "v4", nodes, health="exit 1")
        unhealthy = run_cli(root, "release", "--target", "cluster", env=swarm.env)
        assert unhealthy.returncode == 1, unhealthy.stderr
        assert f"{app_name}-blue_web" in unhealthy.stderr, unhealthy.stderr
        assert [_get(h.app_url) for h in swarm.hosts] == ["v2"] * 3
        left = swarm.hosts[0].docker("stack", "ls", "--format", "{{.Name}}").stdout.split()
        assert f"{app_name}-blue" not in left, left

        # Rollback: the recorded release before, back on every node, from the images the nodes hold.
        back = run_cli(root, "rollback", "--target", "cluster", "--json", env=swarm.env)
        assert back.returncode == 0, back.stderr
        assert [_get(h.app_url) for h in swarm.hosts] == ["v1"] * 3
        status = run_cli(root, "status", "--target", "cluster", "--json", env=swarm.env)
        assert status.returncode == 0, status.stderr
        history = json_out(run_cli(root, "history", "--target", "cluster", "--json", env=swarm.env))
        outcomes = [r["outcome"] for r in history["hosts"][0]["releases"]]
        assert outcomes.count("ok") == 3 and outcomes.count("failed") == 2, outcomes
    finally:
        _cleanup(swarm, app_name)


def _with_db(root: Path, name: str, version: str, nodes: list[str], db_env: str) -> Path:
    """The app with a stateful db that counts its boots on its volume."""
    _write(root, name, version, nodes)
    text = (root / "compose.yaml").read_text()
    text = text.replace("x-immutdock:\n", textwrap.dedent(f"""\
          db:
            image: busybox:latest
            command: ["sh", "-c", "date >> /data/boots; exec sleep 3600"]
            environment: {{SETTING: {db_env}}}
            volumes: ["data:/data"]
        volumes:
          data: {{}}
        x-immutdock:
          stateful: [db]
        """))
    (root / "compose.yaml").write_text(text)
    return root


class _DbWatch:
    """Counts the db's running task containers on every node, over and over, while a `with` lasts."""

    def __init__(self, swarm: SwarmHosts, app: str) -> None:
        import threading

        self.swarm, self.app, self.most, self.looks = swarm, app, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            running = sum(len(h.docker("ps", "-q", "--filter", f"label=io.immutdock.app={self.app}",
                                       "--filter", "label=io.immutdock.role=state", "--filter", "status=running",
                                       check=False).stdout.split()) for h in self.swarm.hosts)
            self.most, self.looks = max(self.most, running), self.looks + 1

    def __enter__(self) -> "_DbWatch":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _db(swarm: SwarmHosts, app: str) -> tuple[int, str]:
    """(the index of the node that runs the db's task, the boots its volume holds)."""
    for i, host in enumerate(swarm.hosts):
        found = host.docker("ps", "-q", "--filter", f"label=io.immutdock.app={app}", "--filter",
                            "label=io.immutdock.role=state", "--filter", "status=running").stdout.split()
        if found:
            return i, host.docker("exec", found[0], "cat", "/data/boots").stdout
    raise AssertionError("the db runs on no node")


def test_a_stateful_service_stays_on_its_volumes_node_keeps_its_data_and_never_runs_twice(
        swarm: SwarmHosts, app_name: str, tmp_path: Path) -> None:
    swarm.load("busybox:latest")
    nodes = [h.url for h in swarm.hosts]
    root = tmp_path / "app"
    try:
        with _DbWatch(swarm, app_name) as watch:
            first = run_cli(_with_db(root, app_name, "v1", nodes, "one"), "release", "--target", "cluster",
                            env=swarm.env)
            assert first.returncode == 0, first.stderr
            node, boots = _db(swarm, app_name)
            assert node == 0 and len(boots.splitlines()) == 1, (node, boots)  # on the manager's node, once
            # A release that changes the db recreates it stop-first, on its node, with its data.
            second = run_cli(_with_db(root, app_name, "v2", nodes, "two"), "release", "--target", "cluster",
                             env=swarm.env)
            assert second.returncode == 0, second.stderr
            assert "stateful db changes first" in second.stderr, second.stderr
            assert [_get(h.app_url) for h in swarm.hosts] == ["v2"] * 3
            node, boots = _db(swarm, app_name)
            assert node == 0 and len(boots.splitlines()) == 2, (node, boots)
            # A rollback never changes the stateful services.
            back = run_cli(root, "rollback", "--target", "cluster", env=swarm.env)
            assert back.returncode == 0, back.stderr
            assert [_get(h.app_url) for h in swarm.hosts] == ["v1"] * 3
            assert _db(swarm, app_name) == (node, boots)
            status = run_cli(root, "status", "--target", "cluster", "--json", env=swarm.env)
            assert status.returncode == 0, status.stderr
        assert watch.looks > 10 and watch.most == 1, (watch.looks, watch.most)
        assert len(swarm.hosts[0].docker("volume", "ls", "-q", "--filter", f"name={app_name}_data").stdout.split()) == 1
        for host in swarm.hosts[1:]:  # made on its node only
            assert not host.docker("volume", "ls", "-q", "--filter", f"name={app_name}_data").stdout.split()
    finally:
        _cleanup(swarm, app_name)
        for host in swarm.hosts:
            host.docker("volume", "rm", f"{app_name}_data", check=False)
