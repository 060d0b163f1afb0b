"""A Swarm target (`x-immutdock.targets.NAME.swarm`) through the command line, on the run's
Swarm of three test hosts: opened as one place (its manager and every listed node over SSH,
each node checked to be the manager's swarm's), read by status and history from the cluster."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from immutdock.targets.ledger import Record
from immutdock.targets.swarm import swarm_ledger

from .hosts import SshHosts
from .support import json_out, run_cli
from .swarm import SwarmHosts

pytestmark = pytest.mark.engine


def _app(root: Path, name: str, manager: str, nodes: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        services:
          web:
            image: busybox:latest
            command: ["httpd", "-f", "-p", "8000"]
        x-immutdock:
          router:
            service: web
            port: 8000
          targets:
            cluster:
              swarm:
                manager: {manager}
                nodes: [{", ".join(nodes)}]
        """))
    return root


def _labelled(host: object, app: str, role: str, color: str = "blue") -> str:
    """A container of the app on one node, as a task's container is found: by its labels."""
    name = f"{app}-{role}-probe"
    host.docker("run", "-d", "--name", name, "--label", f"io.immutdock.app={app}",  # type: ignore[attr-defined]
                "--label", f"io.immutdock.role={role}", "--label", f"io.immutdock.color={color}",
                "--label", "io.immutdock.release=r1", "busybox:latest", "sleep", "600")
    return name


def _cleanup(swarm: SwarmHosts, app: str) -> None:
    swarm.remove_configs(app)
    for host in swarm.hosts:
        found = host.docker("ps", "-aq", "--filter", f"label=io.immutdock.app={app}").stdout.split()
        if found:
            host.docker("rm", "-f", *found, check=False)


def test_status_and_history_read_the_cluster_through_any_manager_and_every_node(
        swarm: SwarmHosts, app_name: str, tmp_path: Path) -> None:
    swarm.load("busybox:latest")
    first, second, third = swarm.hosts
    try:
        with swarm.opened(first) as (written_on,):
            swarm_ledger(written_on.engine).write(app_name, Record(
                number=1, kind="release", color="blue", images={"web": f"{app_name}-web:3f2a9c1b7d4e"},
                config_hash="sha256:c", created="2026-12-04T00:01:00Z", outcome="ok"))
        probe = _labelled(third, app_name, "color")
        # Read through another manager than the one that wrote, with every node listed.
        root = _app(tmp_path / "app", app_name, second.url, [first.url, second.url, third.url])
        history = run_cli(root, "history", "--target", "cluster", "--json", env=swarm.env)
        assert history.returncode == 0, history.stderr
        shown = json_out(history)
        assert shown["target"] == "cluster" and len(shown["hosts"]) == 1  # the swarm is one place
        assert [r["release"] for r in shown["hosts"][0]["releases"]] == ["r1"]
        assert "is not among the target's nodes" not in history.stderr
        assert f"connecting to swarm cluster (manager {second.url}; nodes {first.url}," in history.stderr

        status = run_cli(root, "status", "--target", "cluster", "--json", env=swarm.env)
        report = json_out(status)["hosts"][0]
        assert report["host"] == "cluster" and report["releases"] == 1
        # The container on the third node is the app's, found there by its labels.
        assert [c["name"] for c in report["containers"] if c["role"] == "blue"] == [probe]
        assert status.returncode == 1 and "router" in report["problem"], status.stderr  # no router runs

        # A node of the swarm left out of nodes: said, since immutdock cannot give it images.
        partial = _app(tmp_path / "partial", app_name, first.url, [first.url, second.url])
        said = run_cli(partial, "history", "--target", "cluster", env=swarm.env)
        assert said.returncode == 0, said.stderr
        assert f"swarm node {third.container} is not among the target's nodes" in said.stderr, said.stderr
    finally:
        _cleanup(swarm, app_name)


def test_a_node_outside_the_swarm_or_out_of_reach_stops_the_command_naming_it(
        swarm: SwarmHosts, app_name: str, tmp_path: Path) -> None:
    from .support import free_port

    first, second, _third = swarm.hosts
    outsider = SshHosts(1)
    try:
        stranger = outsider.hosts[0]
        public = (swarm.home / ".ssh" / "id_ed25519.pub").read_text()
        subprocess.run(["docker", "exec", "-i", stranger.container, "sh", "-c",
                        "cat >> /root/.ssh/authorized_keys"], input=public, text=True, check=True)
        root = _app(tmp_path / "app", app_name, first.url, [first.url, stranger.url])
        refused = run_cli(root, "history", "--target", "cluster", "--accept-new-host-key", env=swarm.env)
        assert refused.returncode == 1, refused.stderr
        assert f"{stranger.url} is not a node of the swarm {first.url} manages" in refused.stderr, refused.stderr

        gone = f"ssh://root@127.0.0.1:{free_port()}"  # nothing listens there
        root = _app(tmp_path / "gone", app_name, second.url, [second.url, gone])
        unreachable = run_cli(root, "unlock", "--target", "cluster", env=swarm.env)
        assert unreachable.returncode != 0 and gone in unreachable.stderr, unreachable.stderr
        assert not first.docker("config", "ls", "-q", "--filter", f"label=io.immutdock.app={app_name}").stdout.split()
    finally:
        outsider.close()
        _cleanup(swarm, app_name)
