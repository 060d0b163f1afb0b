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


def _write(root: Path, name: str, version: str, nodes: list[str], command: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    command = command or f'echo {version} > /tmp/index.html; exec httpd -f -p 8000 -h /tmp'
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        services:
          web:
            image: busybox:latest
            command: ["sh", "-c", {json.dumps(command)}]
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

        # Rollback: the recorded release before, back on every node, from the images the nodes hold.
        back = run_cli(root, "rollback", "--target", "cluster", "--json", env=swarm.env)
        assert back.returncode == 0, back.stderr
        assert [_get(h.app_url) for h in swarm.hosts] == ["v1"] * 3
        status = run_cli(root, "status", "--target", "cluster", "--json", env=swarm.env)
        assert status.returncode == 0, status.stderr
        history = json_out(run_cli(root, "history", "--target", "cluster", "--json", env=swarm.env))
        outcomes = [r["outcome"] for r in history["hosts"][0]["releases"]]
        assert outcomes.count("ok") == 3 and "failed" in outcomes, outcomes
    finally:
        _cleanup(swarm, app_name)
