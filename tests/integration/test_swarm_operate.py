"""The operate commands on the run's Swarm of three test hosts: ps (with each task's node), ls,
logs of the tasks on every node, exec in a task on its node, a one-off run beside the tasks
(following logs across a switch is the same code as on an engine: test_operate.py), and down:
every stack, the image on every node, the records, lock, secrets and network in the cluster,
gone; a second down finds nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from .support import json_out, run_cli
from .swarm import SwarmHosts
from .test_swarm_release import _built

pytestmark = pytest.mark.engine

DOCKERFILE = ("FROM busybox:latest\nCOPY index.html /www/index.html\n"
              'CMD ["sh", "-c", "echo started $(cat /www/index.html); exec httpd -f -p 8000 -h /www"]\n')


def _app(root: Path, name: str, version: str, nodes: list[str]) -> Path:
    _built(root, name, version, nodes, stateful=True)
    (root / "web" / "Dockerfile").write_text(DOCKERFILE)
    compose = root / "compose.yaml"  # the secret is db's: a one-off web container beside the tasks needs none
    compose.write_text(compose.read_text().replace("    secrets: [token]\n", "").replace(
        "    stop_grace_period: 1s\n", "    stop_grace_period: 1s\n    secrets: [token]\n"))
    return root


def test_ps_ls_logs_exec_run_and_down_on_a_swarm(swarm: SwarmHosts, app_name: str, tmp_path: Path) -> None:
    swarm.load("busybox:latest")
    nodes = [h.url for h in swarm.hosts]
    root = _app(tmp_path / "app", app_name, "v1", nodes)
    cluster = ("--target", "cluster")
    try:
        first = run_cli(root, "release", *cluster, env=swarm.env)
        assert first.returncode == 0, first.stderr
        ps = run_cli(root, "ps", *cluster, "--json", env=swarm.env)
        assert ps.returncode == 0, ps.stderr
        rows = json_out(ps)["hosts"][0]["containers"]
        roles = [(r["role"], r["service"], r["release"], r["live"]) for r in rows if r["status"] == "running"]
        assert roles == [("router", "router", None, False)] * 3 + [("swapped", "web", "r1", True)] * 2 + [
            ("stateful", "db", None, False)], rows
        assert {r["node"] for r in rows if r["role"] == "router"} == set(nodes), rows  # one on every node
        listed = json_out(run_cli(root, "ls", *cluster, "--json", env=swarm.env))["hosts"][0]["apps"]
        assert [(a["app"], a["live_release"], a["health"]) for a in listed
                if a["app"] == app_name] == [(app_name, "r1", "serving")], listed

        logs = run_cli(root, "logs", *cluster, "web", env=swarm.env)
        assert logs.returncode == 0, logs.stderr
        assert logs.stdout.count("started v1") == 2 and "web-2 (blue)" in logs.stdout, logs.stdout
        shown = run_cli(root, "exec", *cluster, "--index", "2", "web", "cat", "/www/index.html", env=swarm.env)
        assert (shown.returncode, shown.stdout) == (0, "v1\n"), shown.stderr
        assert run_cli(root, "exec", *cluster, "db", "sh", "-c", "exit 9", env=swarm.env).returncode == 9
        ran = run_cli(root, "run", *cluster, "web", "sh", "-c", "cat /www/index.html; exit 4", env=swarm.env)
        assert (ran.returncode, ran.stdout) == (4, "v1\n"), ran.stderr

        gone = run_cli(root, "down", *cluster, "--yes", "--json", env=swarm.env)
        assert gone.returncode == 0, gone.stderr
        removed = json_out(gone)["hosts"][0]["removed"]
        assert removed["records"] == 1 and len(removed["secrets_and_configs"]) == 1, removed
        label = f"label=io.immutdock.app={app_name}"
        for host in swarm.hosts:
            assert host.docker("ps", "-aq", "--filter", label).stdout.split() == [], host.container
            assert host.docker("image", "ls", "-q", "--filter", label).stdout.split() == [], host.container
        manager = swarm.hosts[0]
        assert manager.docker("config", "ls", "-q", "--filter", label).stdout.split() == []  # records, lock
        assert manager.docker("secret", "ls", "-q", "--filter", label).stdout.split() == []
        assert manager.docker("network", "ls", "-q", "--filter", label).stdout.split() == []
        assert [s for s in manager.docker("stack", "ls", "--format", "{{.Name}}").stdout.split()
                if s.startswith(app_name)] == []
        again = run_cli(root, "down", *cluster, "--yes", "--json", env=swarm.env)
        assert json_out(again)["hosts"][0]["outcome"] == "nothing to remove", again.stdout
    finally:
        swarm.remove_app(app_name)
