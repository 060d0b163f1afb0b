"""A color and the stateful services as Swarm stacks (immutdock.targets.swarm.StackColors), on
the run's Swarm of three test hosts: the file immutdock renders for an engine, deployed with
`docker stack deploy` through a manager, watched until it converged; each color's tasks answer
on the edge overlay network under the names the router resolves, from any node; the stateful
service stays on the node of its volume; a color removed leaves no task behind."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from immutdock.config.compose_file import load
from immutdock.errors import ReleaseFailed
from immutdock.identity.redact import Redactor
from immutdock.plan import haproxy, render
from immutdock.targets.nodes import NodeContainers
from immutdock.targets.stacks import StackColors

from .swarm import SwarmHosts

pytestmark = pytest.mark.engine

WEB = 'echo "$$(hostname)" > /tmp/index.html; exec httpd -f -p 8000 -h /tmp'


def _app_file(root: Path, name: str, web_command: str = WEB, publish: int | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "token.txt").write_text("not-a-real-token\n")
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        services:
          web:
            image: busybox:latest
            command: ["sh", "-c", {json.dumps(web_command)}]
            deploy:
              replicas: 3
            secrets: [token]
          db:
            image: busybox:latest
            command: ["sh", "-c", "date >> /data/boots; exec sleep 3600"]
            volumes: ["data:/data"]
        volumes:
          data: {{}}
        secrets:
          token:
            file: ./token.txt
        x-immutdock:
          router:
            service: web
            port: 8000
        {f"    publish: {publish}" if publish else ""}
          stateful: [db]
        """))
    return root


def _cleanup(swarm: SwarmHosts, app: str) -> None:
    swarm.remove_app(app)


def test_a_color_and_the_state_run_as_stacks_answering_where_the_router_looks(
        swarm: SwarmHosts, app_name: str, tmp_path: Path) -> None:
    swarm.load("busybox:latest")
    first, second, third = swarm.hosts
    app = load(_app_file(tmp_path, app_name))
    said: list[str] = []
    try:
        with swarm.opened(first, second, third) as targets:
            found = NodeContainers({t.name: t.engine for t in targets})
            colors = StackColors(targets[0].engine, targets[0].runtime.compose, found, said.append,
                                 timeout=180, stable=2)
            colors.ensure_edge(app_name)  # as a release makes it, before any stack
            colors.up(f"{app_name}-blue", render.color_project(app, "blue", {}, "r1", "sha256:c"))
            assert any(line.startswith(f"{app_name}-blue_web") for line in said), said  # progress per service
            web = [c for c in colors.containers(app_name) if c.labels.get("io.immutdock.color") == "blue"]
            assert len(web) == 3 and all(c.status == "running" for c in web), web
            assert len({found.node_of(c).name for c in web}) >= 2, "the tasks spread over the nodes"

            # The name the router's server-template resolves answers with every task, from any node.
            alias = haproxy.routed_alias("blue", "web")
            looked = third.docker("run", "--rm", "--network", render.edge_network(app_name), "busybox:latest",
                                  "nslookup", alias).stdout
            assert sum(1 for line in looked.splitlines() if line.startswith("Address") and ":53" not in line) == 3, \
                looked
            answered = second.docker("run", "--rm", "--network", render.edge_network(app_name), "busybox:latest",
                                     "wget", "-qO-", f"http://{alias}:8000/").stdout.strip()
            assert answered in {c.id[:12] for c in web}, answered  # a task's container answered (its hostname)

            # The secret is a Swarm secret named by its content, holding the file's value.
            secrets = first.docker("secret", "ls", "--format", "{{.Name}}").stdout.split()
            assert [s for s in secrets if s.startswith(f"{app_name}_secret_token_")], secrets
            inside = first.docker("service", "inspect", f"{app_name}-blue_web").stdout
            assert "not-a-real-token" not in inside

            # The stateful service: one task, on the manager's node, where its volume is made.
            colors.up(f"{app_name}-state", render.state_project(app, {}, Redactor("00" * 16)))
            spec = json.loads(first.docker("service", "inspect", f"{app_name}-state_db").stdout)[0]["Spec"]
            node = first.docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
            assert spec["TaskTemplate"]["Placement"]["Constraints"] == [f"node.id == {node}"]
            assert spec["UpdateConfig"]["Order"] == "stop-first"
            assert first.sh(f"docker volume inspect {app_name}_data >/dev/null && echo here").stdout.strip() == "here"

            colors.down(f"{app_name}-blue")
            assert not found.stack_containers(f"{app_name}-blue")
            assert not first.docker("service", "ls", "-q", "--filter",
                                    f"label=com.docker.stack.namespace={app_name}-blue").stdout.split()
    finally:
        _cleanup(swarm, app_name)


def test_a_color_whose_tasks_keep_failing_fails_its_up_naming_the_service(
        swarm: SwarmHosts, app_name: str, tmp_path: Path) -> None:
    swarm.load("busybox:latest")
    first, second, third = swarm.hosts
    app = load(_app_file(tmp_path, app_name, web_command="echo cannot start >&2; exit 3"))
    try:
        with swarm.opened(first, second, third) as targets:
            colors = StackColors(targets[0].engine, targets[0].runtime.compose,
                                 NodeContainers({t.name: t.engine for t in targets}), lambda _l: None,
                                 timeout=180, stable=2)
            colors.ensure_edge(app_name)
            with pytest.raises(ReleaseFailed) as failed:
                colors.up(f"{app_name}-blue", render.color_project(app, "blue", {}, "r1", "sha256:c"))
            assert f"service {app_name}-blue_web" in str(failed.value)
            assert "non-zero exit (3)" in str(failed.value), str(failed.value)  # the task's error
            assert "cannot start" in (failed.value.details or "")  # and the service's last log lines
    finally:
        _cleanup(swarm, app_name)


def _router_image(app: object) -> str:
    """The router image (images/router), built on this engine as a release builds it."""
    from immutdock.apply.release import Deployer
    from immutdock.gateways.engine import Engine
    from immutdock.targets.hosts import local

    deployer = Deployer(app, local(Engine()), lambda _l: None, lambda _l: None)  # type: ignore[arg-type]
    plan = deployer._router_image_plan()
    deployer.build((), plan)
    image = deployer.router_image(plan)
    assert image
    return image


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode().strip()


def test_the_router_runs_on_every_node_gates_in_each_and_switches_them_all(
        swarm: SwarmHosts, app_name: str, tmp_path: Path) -> None:
    from immutdock.apply.health import wait_ready
    from immutdock.targets.swarm import NodeSwitch

    swarm.load("busybox:latest")
    blue_app = load(_app_file(tmp_path / "blue", app_name, 'echo blue > /tmp/index.html; exec httpd -f -p 8000 -h /tmp',
                              publish=8080))
    green_app = load(_app_file(tmp_path / "green", app_name,
                               'echo green > /tmp/index.html; exec httpd -f -p 8000 -h /tmp', publish=8080))
    image = _router_image(blue_app)
    swarm.load(image)
    said: list[str] = []
    try:
        with swarm.opened(*swarm.hosts) as targets:
            found = NodeContainers({t.name: t.engine for t in targets})
            colors = StackColors(targets[0].engine, targets[0].runtime.compose, found, said.append,
                                 timeout=180, stable=2)
            colors.ensure_edge(app_name)
            colors.up(f"{app_name}-router", render.router_project(blue_app, image, "blue"))
            colors.up(f"{app_name}-blue", render.color_project(blue_app, "blue", {}, "r1", "sha256:b"))
            colors.up(f"{app_name}-green", render.color_project(green_app, "green", {}, "r2", "sha256:g"))
            routers = NodeSwitch(found).router(app_name)
            assert routers is not None and len(routers.members) == 3  # one router task on each node
            for color in ("blue", "green"):
                gate = wait_ready(colors, f"{app_name}-{color}", routers, color, ["web"], 120)
                assert gate.ok, gate.reason  # every router passes every task of the color
            assert routers.live() == "blue"
            assert [_get(h.app_url) for h in swarm.hosts] == ["blue"] * 3

            routers.switch("green")  # in every router
            assert routers.live() == "green"
            assert [_get(h.app_url) for h in swarm.hosts] == ["green"] * 3
            one = NodeSwitch(found).control(routers.members[2].container)  # any one reaches them all
            one.switch("blue")
            assert {r.live() for r in routers.members} == {"blue"}
    finally:
        swarm.hosts[0].docker("stack", "rm", f"{app_name}-router", check=False)
        _cleanup(swarm, app_name)
