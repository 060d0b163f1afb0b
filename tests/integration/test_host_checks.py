"""A test host (sshd and its own dockerd) as a user's server: a docker context pointing at it
is where a release lands, and `doctor --host` checks it over SSH."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from .hosts import SshHost, SshHosts
from .support import IMMUTDOCK, TinyApp, run_cli

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def hosts(engine: object) -> Iterator[SshHosts]:
    made = SshHosts(1)
    try:
        host = made.hosts[0]
        # Its engine's API on its port 8080, published here: what a context's tcp:// endpoint names.
        subprocess.run(["docker", "exec", "-d", host.container, "socat", "TCP-LISTEN:8080,fork,reuseaddr",
                        "UNIX-CONNECT:/var/run/docker.sock"], check=True)
        for base in ("busybox:latest", "debian:bookworm-slim"):  # no registry: the bases are loaded
            saved = subprocess.run(["docker", "save", base], capture_output=True, check=True).stdout
            subprocess.run(["docker", "exec", "-i", host.container, "docker", "load", "-q"], input=saved,
                           capture_output=True, check=True)
        yield made
    finally:
        made.close()


def _mine(host: SshHost, app: str) -> list[str]:
    return host.docker("ps", "-a", "--filter", f"label=io.immutdock.app={app}", "--format", "{{.Names}}").stdout.split()


@pytest.mark.parametrize("how", ["DOCKER_CONTEXT", "docker context use"])
def test_a_docker_context_pointing_at_a_test_host_is_where_a_release_lands(
        tmp_path: Path, hosts: SshHosts, engine, app_name: str, how: str) -> None:
    host = hosts.hosts[0]
    config = tmp_path / "docker-config"  # the docker CLI's own context store, written by the docker CLI
    env = {"DOCKER_CONFIG": str(config)}
    docker = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"} | env
    subprocess.run(["docker", "context", "create", "server", "--docker", f"host=tcp://127.0.0.1:{host.app_port}"],
                   env=docker, check=True, capture_output=True)
    if how == "DOCKER_CONTEXT":
        env["DOCKER_CONTEXT"] = "server"
    else:
        subprocess.run(["docker", "context", "use", "server"], env=docker, check=True, capture_output=True)
    app = TinyApp(tmp_path / "app", app_name).write()
    run = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"} | env  # DOCKER_HOST would win
    try:
        proc = subprocess.run([*IMMUTDOCK, "release"], cwd=app.root, capture_output=True, text=True, timeout=600,
                              env=run)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert {f"{app_name}-blue-web-1", f"{app_name}-router-router-1"} <= set(_mine(host, app_name))
        local = engine.containers.list(all=True, filters={"label": f"io.immutdock.app={app_name}"})
        assert local == [], "nothing of it on this machine's engine"
        status = subprocess.run([*IMMUTDOCK, "status", "--json"], cwd=app.root, capture_output=True, text=True,
                                timeout=120, env=run)
        assert status.returncode == 0 and json.loads(status.stdout)["live_release"] == "r1", status.stderr
    finally:
        subprocess.run([*IMMUTDOCK, "down", "--yes"], cwd=app.root, capture_output=True, timeout=300, env=run)
    assert _mine(host, app_name) == []


def test_doctor_checks_each_ssh_host_it_is_named(tmp_path: Path, hosts: SshHosts) -> None:
    host = hosts.hosts[0]
    env = hosts.env
    proc = run_cli(tmp_path, "doctor", "--host", host.alias, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, said in ((f"ssh://{host.alias} ssh", "logged in as root, host key known"),
                       (f"ssh://{host.alias} engine", "20."), (f"ssh://{host.alias} disk", "free in /var/lib/docker")):
        assert any(line.startswith("ok") and name in line and said in line for line in proc.stdout.splitlines()), \
            (name, proc.stdout)
    checks = json.loads(run_cli(tmp_path, "doctor", "--json", "--host", host.alias, env=env).stdout)
    assert {c["name"] for c in checks if c["ok"]} >= {f"ssh://{host.alias} {w}" for w in ("ssh", "engine", "disk")}

    stranger = hosts.home / ".ssh" / "known_hosts"
    kept = stranger.read_text()
    stranger.write_text("")  # its key unknown: refused, said with the fix, exit 1
    try:
        proc = run_cli(tmp_path, "doctor", "--host", host.alias, env=env)
    finally:
        stranger.write_text(kept)
    assert proc.returncode == 1, proc.stdout
    assert f"FAIL ssh://{host.alias} ssh" in proc.stdout and "is unknown" in proc.stdout, proc.stdout
    assert "ssh-keyscan" in proc.stdout and "--accept-new-host-key" in proc.stdout, proc.stdout
