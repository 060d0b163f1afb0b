"""`immutdock release --target cluster` on the run's Swarm of three test hosts: the router a
global stack publishing on every node, each release a color's stack beside the live one,
gated in every router, switched in all of them, the old color's stack removed; the history in
the cluster."""

from __future__ import annotations

import hashlib
import json
import socket
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from immutdock.plan.converge import when

from .support import Load, json_out, run_cli
from .swarm import SwarmHosts

pytestmark = pytest.mark.engine


def _write(root: Path, name: str, version: str, nodes: list[str], command: str = "", health: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    command = command or f'echo {version} > /tmp/index.html; exec httpd -f -p 8000 -h /tmp'
    health = f"healthcheck: {{test: {json.dumps(['CMD', 'sh', '-c', health])}, interval: 1s, retries: 2}}" \
        if health else ""
    (root / "token.txt").write_text("not-a-real-token\n")
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        services:
          web:
            image: busybox:latest
            command: ["sh", "-c", {json.dumps(command)}]
            {health}
            secrets: [token]
            deploy:
              replicas: 2
        secrets:
          token: {{file: ./token.txt}}
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


def _slow_post(version: str) -> str:
    """web's command: its version at / and at a CGI that answers a POST after 1.5 s."""
    cgi = f"#!/bin/sh\\nsleep 1.5\\necho Content-Type: text/plain; echo; echo {version}\\n"
    return (f"mkdir -p /tmp/cgi-bin; echo {version} > /tmp/index.html; printf '{cgi}' > /tmp/cgi-bin/slow; "
            "chmod +x /tmp/cgi-bin/slow; exec httpd -f -p 8000 -h /tmp")


def _fetch(url: str, path: str) -> tuple[int, str]:
    """GET /, or POST to the slow CGI."""
    request = urllib.request.Request(url + path, data=b"order=1" if path.startswith("/cgi-bin/") else None)
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, ""


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode().strip()


def _cleanup(swarm: SwarmHosts, app: str) -> None:
    swarm.remove_app(app)


def test_a_release_and_the_next_serve_on_every_node(swarm: SwarmHosts, app_name: str, tmp_path: Path) -> None:
    swarm.load("busybox:latest")
    nodes = [h.url for h in swarm.hosts]
    try:
        root = _write(tmp_path / "app", app_name, "v1", nodes, command=_slow_post("v1"))
        first = run_cli(root, "release", "--target", "cluster", "--json", env=swarm.env)
        assert first.returncode == 0, first.stderr
        assert [_get(h.app_url) for h in swarm.hosts] == ["v1"] * 3
        _write(tmp_path / "app", app_name, "v2", nodes, command=_slow_post("v2"))
        # Under load on every node (fast GETs, and slow POSTs in flight when traffic switches): no
        # request fails, and once a node answered v2 it never answers v1 again (each node's router
        # switched once, atomically).
        loads = [Load(h.app_url, clients=2, path="/", slow=1, fetch=_fetch) for h in swarm.hosts]
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
            assert not load.failures and load.ok > 20 and load.slow_ok > 5, (host.container, load.failures[:5],
                                                                             load.ok, load.slow_ok)
            assert {body for *_t, body in load.samples} == {"v1", "v2"}
            first_new = min(ended for _sent, ended, _ok, body in load.samples if body == "v2")
            late = [sent - first_new for sent, _ended, _ok, body in load.samples if body == "v1" and sent > first_new]
            assert not late, (host.container, late[:5])  # nothing sent after v2 answered got v1
        assert json_out(second)["hosts"][0]["color"] == "green"
        assert [_get(h.app_url) for h in swarm.hosts] == ["v2"] * 3
        left = swarm.hosts[0].docker("stack", "ls", "--format", "{{.Name}}").stdout.split()
        assert f"{app_name}-blue" not in left and f"{app_name}-green" in left, left
        # The secret is one Swarm secret named by its content, the colors' both, kept as blue went.
        secrets = [n for n in swarm.hosts[0].docker("secret", "ls", "--format", "{{.Name}}").stdout.split()
                   if n.startswith(f"{app_name}_secret_token_")]
        assert len(secrets) == 1, secrets
        assert "not-a-real-token" not in second.stdout + second.stderr

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
    text = text.replace("secrets:\n  token:", textwrap.dedent(f"""\
          db:
            image: busybox:latest
            command: ["sh", "-c", "date >> /data/boots; exec sleep 3600"]
            environment: {{SETTING: {db_env}}}
            volumes: ["data:/data"]
        volumes:
          data: {{}}
        secrets:
          token:""")).replace("x-immutdock:\n", "x-immutdock:\n  stateful: [db]\n")
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


def _web(host: object, app: str) -> list[str]:
    """The running web task containers of the app on one node."""
    return host.docker("ps", "-q", "--filter", f"label=io.immutdock.app={app}",  # type: ignore[attr-defined]
                       "--filter", "label=io.immutdock.role=color", "--filter", "status=running").stdout.split()


def test_a_stateful_service_stays_on_its_volumes_node_keeps_its_data_and_never_runs_twice(
        swarm: SwarmHosts, app_name: str, tmp_path: Path) -> None:
    swarm.load("busybox:latest")
    nodes = [h.url for h in swarm.hosts]
    root = tmp_path / "app"
    holder = swarm.hosts[2]  # its data is there already (an app adopted with its volume): it runs there
    holder.docker("volume", "create", f"{app_name}_data")
    holder.docker("run", "--rm", "-v", f"{app_name}_data:/data", "busybox:latest", "sh", "-c", "echo old > /data/boots")
    try:
        with _DbWatch(swarm, app_name) as watch:
            first = run_cli(_with_db(root, app_name, "v1", nodes, "one"), "release", "--target", "cluster",
                            env=swarm.env)
            assert first.returncode == 0, first.stderr
            node, boots = _db(swarm, app_name)
            assert node == 2 and boots.splitlines()[0] == "old" and len(boots.splitlines()) == 2, (node, boots)
            # A release that changes the db recreates it stop-first, on its node, with its data.
            second = run_cli(_with_db(root, app_name, "v2", nodes, "two"), "release", "--target", "cluster",
                             env=swarm.env)
            assert second.returncode == 0, second.stderr
            assert "stateful db changes first" in second.stderr, second.stderr
            assert [_get(h.app_url) for h in swarm.hosts] == ["v2"] * 3
            node, boots = _db(swarm, app_name)
            assert node == 2 and len(boots.splitlines()) == 3, (node, boots)  # kept on its node, with its data
            # Drift reads every node: nothing, then a file edited inside a web task's container.
            clean = run_cli(root, "drift", "--target", "cluster", "--json", env=swarm.env)
            assert clean.returncode == 0 and json_out(clean)["outcome"] == "no drift", clean.stdout + clean.stderr
            edited = next(h for h in swarm.hosts if _web(h, app_name))
            edited.docker("exec", _web(edited, app_name)[0], "rm", "/bin/arch")  # a file of the image deleted
            dirty = run_cli(root, "drift", "--target", "cluster", "--json", env=swarm.env)
            assert dirty.returncode == 1, dirty.stderr
            kinds = [(f["kind"], f["service"]) for f in json_out(dirty)["hosts"][0]["drift"]]
            assert kinds == [("filesystem", "web")], kinds
            # A rollback never changes the stateful services.
            back = run_cli(root, "rollback", "--target", "cluster", env=swarm.env)
            assert back.returncode == 0, back.stderr
            assert [_get(h.app_url) for h in swarm.hosts] == ["v1"] * 3
            assert _db(swarm, app_name) == (node, boots)
            status = run_cli(root, "status", "--target", "cluster", "--json", env=swarm.env)
            assert status.returncode == 0, status.stderr
        assert watch.looks > 10 and watch.most == 1, (watch.looks, watch.most)
        for host in swarm.hosts[:2]:  # no empty copy made on another node
            assert not host.docker("volume", "ls", "-q", "--filter", f"name={app_name}_data").stdout.split()
    finally:
        _cleanup(swarm, app_name)


def _built(root: Path, name: str, version: str, nodes: list[str], stateful: bool = False) -> Path:
    """The app with web built here (FROM busybox): each release a new image, shipped to every node;
    `stateful`: with a stateful db of the same image (each release replaces its task)."""
    _write(root, name, version, nodes)
    if stateful:
        text = (root / "compose.yaml").read_text()
        (root / "compose.yaml").write_text(text.replace("secrets:\n  token:", textwrap.dedent("""\
              db:
                build: ./web
                command: ["sleep", "3600"]
                stop_grace_period: 1s
            secrets:
              token:""")).replace("x-immutdock:\n", "x-immutdock:\n  stateful: [db]\n"))
    (root / "web").mkdir(exist_ok=True)
    (root / "web" / "index.html").write_text(f"{version}\n")
    (root / "web" / "Dockerfile").write_text("FROM busybox:latest\nCOPY index.html /www/index.html\n"
                                             'CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]\n')
    text = (root / "compose.yaml").read_text()
    start = text.index("    image: busybox:latest\n")
    end = text.index("    deploy:\n")
    (root / "compose.yaml").write_text(text[:start] + "    build: ./web\n    secrets: [token]\n" + text[end:])
    return root


def test_prune_removes_an_old_releases_image_from_every_node(swarm: SwarmHosts, app_name: str,
                                                            tmp_path: Path) -> None:
    swarm.load("busybox:latest")
    nodes = [h.url for h in swarm.hosts]
    root = tmp_path / "app"
    try:
        for version in ("v1", "v2", "v3"):
            _built(root, app_name, version, nodes, stateful=True)
            (root / "token.txt").write_text(f"token-of-{version}\n")  # each release its own secret value
            done = run_cli(root, "release", "--target", "cluster", env=swarm.env)
            assert done.returncode == 0, done.stderr
        secrets = _secrets(swarm, app_name)
        assert len(secrets) == 3, secrets  # the old ones stay for a rollback, named by a salted digest
        assert not [s for s in secrets if hashlib.sha256(b"token-of-v1\n").hexdigest()[:12] in s], secrets
        released = json_out(run_cli(root, "history", "--target", "cluster", "--json", env=swarm.env))
        images = [r["images"]["web"] for r in released["hosts"][0]["releases"]]
        dbs = [r["images"]["db"] for r in released["hosts"][0]["releases"]]
        assert len(set(images)) == 3 and len(set(dbs)) == 3, (images, dbs)
        assert [_get(h.app_url) for h in swarm.hosts] == ["v3"] * 3
        for host in swarm.hosts:  # each release's image was shipped to every node
            assert all(host.docker("image", "inspect", ref, check=False).returncode == 0 for ref in images), host
        verified = run_cli(root, "verify", "--target", "cluster", "--json", env=swarm.env)  # r3, rebuilt here
        assert verified.returncode == 0, verified.stderr
        checked = json_out(verified)["hosts"][0]
        assert checked["release"] == "r3" and checked["outcome"] in ("verified", "not reproducible"), checked
        for image in checked["images"]:  # the release's image as a node has it, and its rebuild here, compared
            assert image["content_hash_equal"] is True and image["recorded_id"], image
            assert image["rebuilt_id"] and isinstance(image["image_id_equal"], bool), image
        (root / "web" / "index.html").write_text("v4\n")
        differs = run_cli(root, "verify", "--target", "cluster", "--release", "r2", "--no-rebuild", env=swarm.env)
        assert differs.returncode == 1 and "web:   file index.html changed" in differs.stdout, differs.stdout
        _built(root, app_name, "v3", nodes, stateful=True)
        # The db's node keeps its replaced tasks' stopped containers (Swarm's task history): r1's db among them.
        held = [h for h in swarm.hosts if h.docker("ps", "-aq", "--filter", f"ancestor={dbs[0]}").stdout.split()]
        assert held, "no stopped task of r1's db is left to hold its image"
        pruned = run_cli(root, "prune", "--target", "cluster", "--keep", "2", "--json", env=swarm.env)
        assert pruned.returncode == 0, pruned.stderr
        assert sorted(json_out(pruned)["hosts"][0]["removed_images"]) == sorted([images[0], dbs[0]])  # r2, r3 kept
        gone = json_out(pruned)["hosts"][0]["removed_objects"]  # r1's secret, with the release it ran with
        assert len(gone) == 1 and _secrets(swarm, app_name) == sorted(set(secrets) - set(gone)), (gone, secrets)
        for host in swarm.hosts:
            assert host.docker("image", "inspect", images[0], check=False).returncode != 0, host
            assert host.docker("image", "inspect", dbs[0], check=False).returncode != 0, host
            assert all(host.docker("image", "inspect", ref, check=False).returncode == 0 for ref in images[1:]), host
        history = json_out(run_cli(root, "history", "--target", "cluster", "--json", env=swarm.env))
        assert [r["compacted"] for r in history["hosts"][0]["releases"]] == [True, False, False], history
        back = run_cli(root, "rollback", "--target", "cluster", env=swarm.env)  # to r2, whose image stayed
        assert back.returncode == 0, back.stderr
        assert [_get(h.app_url) for h in swarm.hosts] == ["v2"] * 3
        # r2's own secret value, though the file now holds another.
        assert (root / "token.txt").read_text() == "not-a-real-token\n"
        for host in swarm.hosts:
            for container in _web(host, app_name):
                assert host.docker("exec", container, "cat", "/run/secrets/token").stdout == "token-of-v2\n"
    finally:
        _cleanup(swarm, app_name)
        for host in swarm.hosts:
            host.sh(f"docker image ls -q --filter label=io.immutdock.app={app_name} | xargs -r docker rmi -f "
                    ">/dev/null 2>&1; true")


def test_a_swarm_target_with_a_registry_pushes_once_and_every_node_pulls(swarm: SwarmHosts, app_name: str,
                                                                         tmp_path: Path) -> None:
    swarm.load("busybox:latest")
    address = swarm.registry()  # 127.0.0.1:PORT here and on every node
    nodes = [h.url for h in swarm.hosts]
    root = _built(tmp_path / "app", app_name, "v1", nodes)
    text = (root / "compose.yaml").read_text()
    (root / "compose.yaml").write_text(text.replace("    cluster:\n", f"    cluster:\n      registry: {address}\n", 1))
    try:
        done = run_cli(root, "release", "--target", "cluster", "--json", env=swarm.env)
        assert done.returncode == 0, done.stderr
        out = json_out(done)
        status = json_out(run_cli(root, "status", "--target", "cluster", "--json", env=swarm.env))
        image = status["hosts"][0]["images"]["web"]
        assert out["registry"]["registry"] == address and image in out["registry"]["images"], out
        assert [_get(h.app_url) for h in swarm.hosts] == ["v1"] * 3
        for host in swarm.hosts:  # every node holds it under its content-hash name; the registry's was passing
            assert host.docker("image", "inspect", image, check=False).returncode == 0, host
            assert not host.docker("image", "ls", "-q", "--filter", f"reference={address}/*").stdout.strip(), host
    finally:
        _cleanup(swarm, app_name)
        for host in swarm.hosts:
            host.sh(f"docker image ls -q --filter label=io.immutdock.app={app_name} | xargs -r docker rmi -f "
                    ">/dev/null 2>&1; true")


def _secrets(swarm: SwarmHosts, app: str) -> list[str]:
    return sorted(n for n in swarm.hosts[0].docker("secret", "ls", "--format", "{{.Name}}").stdout.split()
                  if n.startswith(f"{app}_secret_token_"))


def _with_job(root: Path, name: str, version: str, nodes: list[str], job: str) -> Path:
    """The app whose web waits for a one-shot migrate job to complete."""
    _write(root, name, version, nodes)
    text = (root / "compose.yaml").read_text().replace("    deploy:\n      replicas: 2\n", textwrap.indent(
        textwrap.dedent("""\
              deploy:
                replicas: 2
              depends_on:
                migrate: {condition: service_completed_successfully}
            migrate:
              image: busybox:latest
              command: ["sh", "-c", %s]
            """) % json.dumps(job), "  "), 1)
    (root / "compose.yaml").write_text(text)
    return root


def _tasks(host: object, service: str) -> list[dict]:
    ids = host.docker("service", "ps", "-q", "--no-trunc", service).stdout.split()  # type: ignore[attr-defined]
    return json.loads(host.docker("inspect", *ids).stdout) if ids else []  # type: ignore[attr-defined]


def test_a_job_runs_once_per_release_as_a_swarm_job_before_the_colors_services_start(
        swarm: SwarmHosts, app_name: str, tmp_path: Path) -> None:
    swarm.load("busybox:latest")
    nodes = [h.url for h in swarm.hosts]
    root = tmp_path / "app"
    first = swarm.hosts[0]
    try:
        # What a Swarm cannot run is refused at plan time (exit 2), before anything is built or made:
        # a job that waits for another job, and a stateful service of two tasks.
        chained = _with_job(root, app_name, "v1", nodes, "echo migrating")
        text = (root / "compose.yaml").read_text()
        assert "  migrate:\n" in text, text
        chained.joinpath("compose.yaml").write_text(text.replace(
            "  migrate:\n", "  prepare:\n    image: busybox:latest\n    command: [\"true\"]\n  migrate:\n"
            "    depends_on:\n      prepare: {condition: service_completed_successfully}\n", 1))
        doubled = _with_db(tmp_path / "doubled", app_name, "v1", nodes, "one")
        text = (doubled / "compose.yaml").read_text()
        assert "    volumes: [\"data:/data\"]\n" in text, text
        (doubled / "compose.yaml").write_text(text.replace("    volumes: [\"data:/data\"]\n",
                                                           "    volumes: [\"data:/data\"]\n    deploy: {replicas: 2}\n"))
        for where, says in ((chained, "services.migrate.depends_on: migrate is a job"),
                            (doubled, "services.db.deploy: a stateful service runs exactly one task on a Swarm")):
            for command in ("plan", "release"):
                refused = run_cli(where, command, "--target", "cluster", env=swarm.env)
                assert refused.returncode == 2 and says in refused.stderr, (command, refused.stderr)
        assert not first.docker("service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={app_name}-blue"
                                ).stdout.split()
        assert not [v for h in swarm.hosts for v in h.docker("volume", "ls", "-q", "--filter",
                                                             f"name={app_name}_").stdout.split()]
        done = run_cli(_with_job(root, app_name, "v1", nodes, "echo migrating; sleep 2"), "release", "--target",
                       "cluster", env=swarm.env)
        assert done.returncode == 0, done.stderr
        assert [_get(h.app_url) for h in swarm.hosts] == ["v1"] * 3
        job = _tasks(first, f"{app_name}-blue_migrate")
        assert [t["Status"]["State"] for t in job] == ["complete"], job  # once, to completion
        web = _tasks(first, f"{app_name}-blue_web")
        assert len(web) == 2 and all(t["Status"]["State"] == "running" for t in web), web
        web_made = min(when(t["CreatedAt"]) for t in web)  # web's tasks were made once the job completed
        assert when(job[0]["Status"]["Timestamp"]) <= web_made, (job, web)

        failing = run_cli(_with_job(root, app_name, "v2", nodes, "echo cannot migrate >&2; exit 4"), "release",
                          "--target", "cluster", env=swarm.env)
        assert failing.returncode == 1, failing.stderr
        assert f"service {app_name}-green_migrate" in failing.stderr and "non-zero exit (4)" in failing.stderr, \
            failing.stderr
        assert [_get(h.app_url) for h in swarm.hosts] == ["v1"] * 3
    finally:
        _cleanup(swarm, app_name)


def test_a_single_node_swarm_releases_and_rolls_back_keeping_its_stateful_service(
        engine: object, app_name: str, tmp_path: Path) -> None:
    one = SwarmHosts(1)  # a swarm of its own: one test host, its manager and only node
    try:
        one.load("busybox:latest")
        nodes = [one.hosts[0].url]
        root = tmp_path / "app"
        for version in ("v1", "v2"):
            done = run_cli(_with_db(root, app_name, version, nodes, "same"), "release", "--target", "cluster",
                           env=one.env)
            assert done.returncode == 0, done.stderr
            assert _get(one.hosts[0].app_url) == version
        back = run_cli(root, "rollback", "--target", "cluster", env=one.env)
        assert back.returncode == 0, back.stderr
        assert _get(one.hosts[0].app_url) == "v1"
        boots = _db(one, app_name)[1]
        assert len(boots.splitlines()) == 1, boots  # started once: the db never changed
        # heal --stateful: a file edited in a web task and in the db's task, both replaced by fresh ones
        # (the file as the live release, v1, has it: a file changed since is drift that heal leaves).
        _with_db(root, app_name, "v1", nodes, "same")
        node = one.hosts[0]
        db = node.docker("ps", "-q", "--filter", f"label=io.immutdock.app={app_name}", "--filter",
                         "label=io.immutdock.role=state", "--filter", "status=running").stdout.split()
        for container in (_web(node, app_name)[0], *db):
            node.docker("exec", container, "rm", "/bin/arch")  # a file of the image deleted: a snowflake
        assert run_cli(root, "drift", "--target", "cluster", env=one.env).returncode == 1
        healed = run_cli(root, "heal", "--stateful", "--target", "cluster", env=one.env)
        assert healed.returncode == 0, healed.stderr
        clean = run_cli(root, "drift", "--target", "cluster", env=one.env)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert _get(one.hosts[0].app_url) == "v1"
        assert len(_db(one, app_name)[1].splitlines()) == 2  # the db's fresh task, on its volume
        history = json_out(run_cli(root, "history", "--target", "cluster", "--json", env=one.env))
        assert [r["kind"] for r in history["hosts"][0]["releases"]] == ["release", "release", "rollback", "heal"], \
            history
    finally:
        one.close()


def test_a_router_with_tls_serves_https_on_every_node(swarm: SwarmHosts, app_name: str, tmp_path: Path) -> None:
    import ssl
    import subprocess

    swarm.load("busybox:latest")
    nodes = [h.url for h in swarm.hosts]
    root = _write(tmp_path / "app", app_name, "v1", nodes)
    (root / "tls").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(root / "tls" / "site.key"),
                    "-out", str(root / "tls" / "site.crt")], check=True, capture_output=True)
    text = (root / "compose.yaml").read_text()
    (root / "compose.yaml").write_text(text.replace("    publish: 8080\n",
                                                    "    publish: 8080\n    tls: {cert: tls/site.crt, key: tls/site.key}\n"))
    trusted = ssl.create_default_context(cafile=str(root / "tls" / "site.crt"))
    try:
        done = run_cli(root, "release", "--target", "cluster", env=swarm.env)
        assert done.returncode == 0, done.stderr
        for host in swarm.hosts:  # every node's router task holds the certificate
            port = int(host.app_url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    trusted.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := tls.recv(4096):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 200") and answer.rstrip().endswith(b"v1"), (host, answer[-200:])
    finally:
        _cleanup(swarm, app_name)
