"""Releases to remote hosts over SSH, on real test hosts (sshd + their own dockerd): a
target of two hosts, images shipped without a registry and only the layers a host lacks, a
failing host that stops the rollout, a re-run that finishes it, host keys, and the lock."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from .hosts import SshHosts
from immutdock.config.model import Target
from immutdock.gateways.engine import Engine
from immutdock.targets import lock
from immutdock.targets.hosts import close_hosts, open_hosts
from .support import IMMUTDOCK, Background, get, json_out, run_cli

pytestmark = pytest.mark.engine

DOCKERFILE = """\
FROM busybox:latest
COPY . /www
CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]
"""
ASSET = 256 * 1024  # an incompressible file of the app's code: its layer is the one that changes


@pytest.fixture(scope="module")
def hosts(engine: object) -> Iterator[SshHosts]:
    made = SshHosts(2)
    try:
        yield made
    finally:
        made.close()


class RemoteApp:
    """A busybox web app whose health fails on a host that has /flags/fail in its `flags`
    volume (a host-side fault, the same images everywhere)."""

    def __init__(self, root: Path, name: str, hosts: SshHosts, canary: int = 0, parallel: int = 2,
                 registry: str | None = None, slow_gate: bool = False) -> None:
        self.root, self.name, self.hosts = root, name, hosts
        # slow_gate: a fault keeps the gate waiting (a failing probe counts only after the start period)
        start = "\n" + " " * 18 + "start_period: 120s" if slow_gate else ""  # (before the dedent)
        gate = 120 if slow_gate else 8
        aliases = ", ".join(h.alias for h in hosts.hosts)
        pushed_to = f", registry: '{registry}'" if registry else ""
        (root / "compose.yaml").write_text(textwrap.dedent(f"""\
            name: {name}
            services:
              web:
                build: ./web
                init: true
                stop_grace_period: 2s
                ports: ["8080:8000"]
                volumes: ["flags:/flags:ro"]
                healthcheck:
                  test: ["CMD-SHELL", "test ! -e /flags/fail && wget -qO- http://127.0.0.1:8000/version"]
                  interval: 1s
                  retries: 2{start}
            volumes:
              flags: {{}}
            x-immutdock:
              router:
                health: {{path: /version, timeout: {gate}}}
              settle: 1
              targets:
                both: {{hosts: [{aliases}], canary: {canary}, parallel: {parallel}{pushed_to}}}
            """))
        self.write("v1")

    def write(self, version: str) -> None:
        web = self.root / "web"
        web.mkdir(exist_ok=True)
        (web / "Dockerfile").write_text(DOCKERFILE)
        (web / "version").write_text(version + "\n")
        (web / "asset.bin").write_bytes(os.urandom(ASSET))

    def cli(self, *args: str, timeout: float = 600):  # -> CompletedProcess
        return run_cli(self.root, *args, env=self.hosts.env, timeout=timeout)

    def serving(self, i: int) -> str:
        return get(self.hosts.hosts[i].app_url, "/version")[1].strip()

    def fault(self, i: int, on: bool) -> None:
        """Make host i's gate fail (or pass again), through the app's `flags` volume there."""
        host = self.hosts.hosts[i]
        host.docker("volume", "create", f"{self.name}_flags")
        folder = host.docker("volume", "inspect", "-f", "{{.Mountpoint}}", f"{self.name}_flags").stdout.strip()
        host.sh(f"touch {folder}/fail" if on else f"rm -f {folder}/fail")

    def cleanup(self) -> None:
        for host in self.hosts.hosts:
            found = host.docker("ps", "-aq", "--filter", f"label=io.immutdock.app={self.name}").stdout.split()
            found += host.docker("ps", "-aq", "--filter", f"name={self.name}").stdout.split()
            if found:
                host.docker("rm", "-f", *set(found), check=False)
            host.docker("network", "prune", "-f", check=False)
            vols = host.docker("volume", "ls", "-q", "--filter", f"name={self.name}").stdout.split()
            if vols:
                host.docker("volume", "rm", "-f", *vols, check=False)
        from .support import cleanup

        cleanup(self.name)  # the images built on this machine


@pytest.fixture
def app(tmp_path: Path, app_name: str, hosts: SshHosts) -> Iterator[RemoteApp]:
    made = RemoteApp(tmp_path, app_name, hosts)
    try:
        yield made
    finally:
        made.cleanup()


def _layer_gzip_size(image: str, base: str) -> int:
    """The gzip-compressed size of `image`'s layers that `base` does not have (docker save)."""
    engine = Engine()
    base_layers = set((engine.inspect_image(base) or {})["RootFS"]["Layers"])
    buf = io.BytesIO()
    engine.save_images([image], buf)
    buf.seek(0)
    total = 0
    with tarfile.open(fileobj=buf) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
        for path, diff in zip(manifest[0]["Layers"], config["rootfs"]["diff_ids"]):
            if diff not in base_layers:
                total += len(gzip.compress(tar.extractfile(path).read()))  # type: ignore[union-attr]
    return total


def _whole_image_gzip_size(image: str) -> int:
    buf = io.BytesIO()
    Engine().save_images([image], buf)
    return len(gzip.compress(buf.getvalue(), 6))


def test_two_hosts_get_the_release_and_only_the_layers_they_lack(app: RemoteApp, tmp_path: Path) -> None:
    first = app.cli("release", "--target", "both", "--json")
    assert first.returncode == 0, first.stderr
    out = json_out(first)
    assert [h["outcome"] for h in out["hosts"]] == ["ok", "ok"], out
    assert {h["release"] for h in out["hosts"]} == {"r1"}
    assert all(h["bytes_shipped"] > ASSET for h in out["hosts"]), out  # the app's layer at least
    assert {"plan", "build", "ship"} <= set(out["timings"]), out  # the steps done once for the fleet
    for h in out["hosts"]:  # each host's phases: what it runs, its images' arrival, then its release's own
        assert {"observe", "delivery", "start", "gate", "settle", "total"} <= set(h["timings"]), h
    assert app.serving(0) == app.serving(1) == "v1"
    for h in app.hosts.hosts:  # built here, not there: no build cache or buildx on the host was used
        assert h.docker("image", "ls", "-q", "--filter", f"reference={app.name}-web").stdout.strip()

    again = app.cli("release", "--target", "both", "--json")
    assert again.returncode == 0, again.stderr
    out = json_out(again)
    assert out["outcome"] == "noop" and out["bytes_shipped"] == 0, out
    assert [h["bytes_shipped"] for h in out["hosts"]] == [0, 0]
    plan = json_out(app.cli("plan", "--target", "both", "--json"))
    assert [(p["noop"], p["release"]) for p in plan["hosts"]] == [(True, "r1"), (True, "r1")], plan

    app.write("v2")  # a code change: one new layer (the COPY), the busybox base unchanged
    plan = app.cli("plan", "--target", "both")
    assert plan.returncode == 0 and plan.stdout.count("start r2 as") == 2, plan.stdout + plan.stderr
    second = app.cli("release", "--target", "both", "--json")
    assert second.returncode == 0, second.stderr
    out = json_out(second)
    assert {h["release"] for h in out["hosts"]} == {"r2"} and app.serving(0) == app.serving(1) == "v2"
    image = [i for i in json_out(app.cli("status", "--target", "both", "--json"))["hosts"][0]["images"].values()][0]
    layer = _layer_gzip_size(image, "busybox:latest")
    whole = _whole_image_gzip_size(image)
    for h in out["hosts"]:
        assert abs(h["bytes_shipped"] - layer) <= 0.1 * layer, (h, layer)
        assert h["bytes_shipped"] < whole / 3, (h, whole)  # the busybox base was not sent again
    assert f"{app.hosts.hosts[0].alias}: shipped" in second.stderr, second.stderr

    status = app.cli("status", "--target", "both", "--json")
    assert status.returncode == 0, status.stderr
    data = json_out(status)
    assert [h["live_release"] for h in data["hosts"]] == ["r2", "r2"] and data["drift"] == []
    history = json_out(app.cli("history", "--target", "both", "--json"))
    assert [[r["release"] for r in h["releases"]] for h in history["hosts"]] == [["r1", "r2"], ["r1", "r2"]]

    clean = app.cli("drift", "--target", "both", "--json")
    assert clean.returncode == 0 and json_out(clean)["outcome"] == "no drift", clean.stdout + clean.stderr
    first = app.hosts.hosts[0]
    web = first.docker("ps", "-q", "--filter", f"label=io.immutdock.app={app.name}", "--filter",
                       "label=io.immutdock.role=color").stdout.split()[0]
    first.docker("exec", web, "sh", "-c", "echo edited > /www/version")  # a snowflake on one host
    drifted = app.cli("drift", "--target", "both", "--json")
    assert drifted.returncode == 1, drifted.stderr
    assert [[f["kind"] for f in r["drift"]] for r in json_out(drifted)["hosts"]] == [["filesystem"], []], \
        drifted.stdout

    back = app.cli("rollback", "--target", "both", "--json")
    assert back.returncode == 0, back.stderr
    assert [h["outcome"] for h in json_out(back)["hosts"]] == ["ok", "ok"]
    assert app.serving(0) == app.serving(1) == "v1"
    text = app.cli("history", "--target", "both")
    assert text.returncode == 0 and text.stdout.count("rollback of r1") == 2, text.stdout


    app.write("v3")
    assert app.cli("release", "--target", "both").returncode == 0  # r4; r3 (the rollback) ran r1's images
    archives = tmp_path / "archives"  # r2's image goes, on each host, archived first from each
    pruned = app.cli("prune", "--target", "both", "--keep", "2", "--archive", str(archives), "--json")
    assert pruned.returncode == 0, pruned.stderr
    rows = json_out(pruned)["hosts"]
    assert [h["removed_images"] for h in rows] == [[image], [image]], pruned.stdout
    for h, row in zip(app.hosts.hosts, rows):
        assert [a["archive"] for a in row["archived"]] == [str(archives / h.alias / f"{app.name}-r2.tar.gz")]
        assert h.docker("image", "inspect", image, check=False).returncode != 0
    assert app.serving(0) == app.serving(1) == "v3"
    gone = app.cli("rollback", "--target", "both", "--to", "r2")
    assert gone.returncode == 1 and "--archive" in gone.stderr, gone.stderr
    assert app.serving(0) == app.serving(1) == "v3"
    back = app.cli("rollback", "--target", "both", "--to", "r2", "--archive", str(archives), "--json")
    assert back.returncode == 0, back.stderr  # each host loads its own archive back
    assert app.serving(0) == app.serving(1) == "v2"
    for h in app.hosts.hosts:
        archived = json.loads((archives / h.alias / f"{app.name}-r2.json").read_text())["image_ids"][image]
        assert h.docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip() == archived


def test_a_target_with_a_registry_pushes_once_and_each_host_pulls_what_it_lacks(
        tmp_path: Path, app_name: str, hosts: SshHosts) -> None:
    address = hosts.registry()  # 127.0.0.1:PORT here and on both hosts
    app = RemoteApp(tmp_path, app_name, hosts, registry=address)
    try:
        first = app.cli("release", "--target", "both", "--json")
        assert first.returncode == 0, first.stderr
        out = json_out(first)
        assert [h["outcome"] for h in out["hosts"]] == ["ok", "ok"], out
        assert app.serving(0) == app.serving(1) == "v1"
        image = json_out(app.cli("status", "--target", "both", "--json"))["hosts"][0]["images"]["web"]
        assert out["registry"]["registry"] == address and image in out["registry"]["images"], out
        assert all(h["bytes_shipped"] > ASSET for h in out["hosts"]), out  # compressed layers pulled
        catalog = json.loads(get(f"http://{address}", "/v2/_catalog")[1])
        assert f"{app.name}-web" in catalog["repositories"], catalog
        for h in app.hosts.hosts:  # held under its own name; the registry's name was passing
            assert h.docker("image", "inspect", image).returncode == 0
            assert not h.docker("image", "ls", "-q", "--filter", f"reference={address}/*").stdout.strip()
        assert not Engine().client.images.list(name=f"{address}/{app.name}-web")

        again = json_out(app.cli("release", "--target", "both", "--json"))
        assert again["outcome"] == "noop" and again["bytes_shipped"] == 0 and "registry" not in again, again

        app.write("v2")  # one new layer: pushed once, pulled by each host; the base stays
        second = app.cli("release", "--target", "both", "--json")
        assert second.returncode == 0, second.stderr
        out = json_out(second)
        assert app.serving(0) == app.serving(1) == "v2"
        assert out["registry"]["layers_pushed"] == 1 and out["registry"]["layers_present"] >= 1, out
        image = json_out(app.cli("status", "--target", "both", "--json"))["hosts"][0]["images"]["web"]
        layer = _layer_gzip_size(image, "busybox:latest")
        for h, row in zip(out["shipped"], out["hosts"]):
            assert h["layers_sent"] == 1 and h["layers_skipped"] >= 1, h
            assert abs(row["bytes_shipped"] - layer) <= 0.1 * layer, (row, layer)
        assert f"{app.hosts.hosts[1].alias}: pulled" in second.stderr, second.stderr

        subprocess.run(["docker", "stop", "-t", "1", f"itreg-{hosts.tag}"], check=True, capture_output=True)
        app.write("v3")
        down = app.cli("release", "--target", "both")
        assert down.returncode == 1, down.stderr
        assert address in down.stderr and "docker login" in down.stderr, down.stderr
        assert app.serving(0) == app.serving(1) == "v2"  # nothing changed on either host
        assert not Engine().client.images.list(name=f"{address}/{app.name}-web")
    finally:
        app.cleanup()


def test_ctrl_c_while_two_hosts_release_side_by_side_undoes_both(tmp_path: Path, app_name: str,
                                                                  hosts: SshHosts) -> None:
    app = RemoteApp(tmp_path, app_name, hosts, parallel=2, slow_gate=True)
    killed_tmp = ""
    try:
        assert app.cli("release", "--target", "both").returncode == 0
        app.fault(0, True)
        app.fault(1, True)  # both gates wait: each host's release is under way when Ctrl-C comes
        app.write("v2")
        release = Background(app.root, "release", "--target", "both", env=app.hosts.env)
        for h in app.hosts.hosts:
            release.wait_for(f"{h.alias}: health:", timeout=300)
        os.killpg(release.proc.pid, signal.SIGINT)  # what the terminal does
        err = release.finish(180)
        assert release.proc.returncode == 130, err
        for h in app.hosts.hosts:
            assert f"{h.alias}: release r2 interrupted before the switch" in err, err
            colors = h.docker("ps", "-a", "--filter", f"label=io.immutdock.app={app.name}", "--format",
                              '{{.Label "io.immutdock.release"}}').stdout.split()
            assert set(colors) - {""} == {"r1"}, (h.alias, colors)  # r2's color was removed
        assert app.serving(0) == app.serving(1) == "v1"
        history = json_out(app.cli("history", "--target", "both", "--json"))
        assert [[(r["release"], r["outcome"]) for r in h["releases"]] for h in history["hosts"]] == \
            [[("r1", "ok"), ("r2", "interrupted")]] * 2, history

        killed_tmp = tempfile.mkdtemp(prefix="it-killed-")  # short: it holds the SSH sockets it leaves
        killed = Background(app.root, "release", "--target", "both", env={**app.hosts.env, "TMPDIR": killed_tmp})
        for h in app.hosts.hosts:
            killed.wait_for(f"{h.alias}: health:", timeout=300)
        killed.proc.kill()  # kill -9: nothing undone; each host keeps a half-made color
        killed.finish(30)
        found = app.cli("status", "--target", "both", "--json")
        assert found.returncode == 0, found.stderr  # v1 still serves on both
        idle = {"blue": "green", "green": "blue"}[json_out(found)["hosts"][0]["live_color"]]
        assert [h["half_made"] for h in json_out(found)["hosts"]] == [[idle], [idle]], found.stdout
        assert found.stderr.count("status --reap --target both") == 2, found.stderr
        reaped = app.cli("status", "--reap", "--target", "both", "--json")
        assert reaped.returncode == 0, reaped.stderr
        assert [h["half_made"] for h in json_out(reaped)["hosts"]] == [[], []], reaped.stdout
        for h in app.hosts.hosts:
            assert f"{h.alias}: removed half-made {app.name}-{idle}" in reaped.stderr, reaped.stderr

        app.fault(0, False)
        app.fault(1, False)
        again = app.cli("release", "--target", "both")  # the locks were freed
        assert again.returncode == 0, again.stderr
        assert app.serving(0) == app.serving(1) == "v2"
    finally:
        app.cleanup()
        if killed_tmp:
            shutil.rmtree(killed_tmp, ignore_errors=True)  # what the killed release left


def test_a_host_that_stops_answering_fails_its_release_within_a_deadline(tmp_path: Path, app_name: str,
                                                                          hosts: SshHosts) -> None:
    """A host paused mid-release (it answers nothing, its connections stay open) fails within
    seconds, not at the gate's end; the other host goes on; no library traceback is printed."""
    app = RemoteApp(tmp_path, app_name, hosts, parallel=2, slow_gate=True)
    paused = hosts.hosts[1]
    try:
        assert app.cli("release", "--target", "both").returncode == 0
        app.fault(1, True)  # the second host's gate waits (120 s): its release is under way
        app.write("v2")
        release = Background(app.root, "release", "--target", "both", env=app.hosts.env)
        release.wait_for(f"{paused.alias}: health:", timeout=300)
        paused.pause()
        t0 = time.monotonic()
        err = release.finish(180)
        took = time.monotonic() - t0
        assert release.proc.returncode == 1, err
        assert took < 45, f"the release waited {took:.0f} s on a host that answers nothing"
        assert "Traceback" not in err and "paramiko" not in err, err
        assert f"error: ssh://{paused.alias}:" in err and "stopped answering" in err, err
        assert app.serving(0) == "v2"
    finally:
        subprocess.run(["docker", "unpause", paused.container], capture_output=True)
        app.fault(1, False)
        app.cleanup()


def test_a_host_behind_a_jump_host_reached_with_a_key_in_the_agent(tmp_path: Path, app_name: str,
                                                                   hosts: SshHosts) -> None:
    """~/.ssh/config's ProxyJump, and a key only the SSH agent holds (none in ~/.ssh)."""
    first, second = hosts.hosts
    app = RemoteApp(tmp_path, app_name, hosts)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    (home / ".ssh" / "config").write_text(
        f"Host jump\n  HostName 127.0.0.1\n  Port {first.ssh_port}\n  User root\n\n"
        f"Host behind\n  HostName {second.container}\n  User root\n  ProxyJump jump\n")
    second_key = second.host_key_line().split(" ", 1)[1]
    known = home / ".ssh" / "known_hosts"
    known.write_text(first.host_key_line())  # the host behind is not known yet
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        subprocess.run(["ssh-add", "-q", str(hosts.key)], env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
                       check=True, capture_output=True)
        env = {"HOME": str(home), "SSH_AUTH_SOCK": str(sock)}

        unknown = run_cli(app.root, "history", "--host", "behind", env=env)
        assert unknown.returncode == 2, unknown.stderr
        assert "is unknown" in unknown.stderr and second.container in unknown.stderr, unknown.stderr

        known.write_text(first.host_key_line() + f"{second.container} {second_key}")
        through = run_cli(app.root, "history", "--host", "behind", "--json", env=env)
        assert through.returncode == 0, through.stderr
        assert json_out(through)["hosts"][0]["host"] == "ssh://behind"
        first_ip = subprocess.run(["docker", "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{hosts.network}").IPAddress}}}}',
                                   first.container], capture_output=True, text=True, check=True).stdout.strip()
        logs = subprocess.run(["docker", "logs", second.container], capture_output=True, text=True).stderr
        assert f"Accepted publickey for root from {first_ip} " in logs, logs[-2000:]  # it came through the jump

        no_agent = run_cli(app.root, "history", "--host", "behind", env={**env, "SSH_AUTH_SOCK": ""})
        assert no_agent.returncode == 2 and "no SSH key to log in as root" in no_agent.stderr, no_agent.stderr
    finally:
        agent.terminate()
        agent.wait(10)
        app.cleanup()


def test_a_failing_host_stops_the_rollout_and_a_rerun_finishes_it(tmp_path: Path, app_name: str,
                                                                  hosts: SshHosts) -> None:
    app = RemoteApp(tmp_path, app_name, hosts, canary=1, parallel=1)
    try:
        assert app.cli("release", "--target", "both").returncode == 0
        assert app.serving(0) == app.serving(1) == "v1"

        app.fault(1, True)  # the second host's gate fails; the canary passes
        app.write("v2")
        failed = app.cli("release", "--target", "both", "--json")
        assert failed.returncode == 1, failed.stderr
        host2 = hosts.hosts[1].alias
        assert f"error: ssh://{host2}:" in failed.stderr and "health gate" in failed.stderr, failed.stderr
        rows = {h["host"]: h for h in json_out(failed)["hosts"]}
        assert rows[f"ssh://{hosts.hosts[0].alias}"]["outcome"] == "ok"
        assert rows[f"ssh://{host2}"]["outcome"] == "failed"
        assert app.serving(0) == "v2" and app.serving(1) == "v1"  # the failing host kept its release
        status = app.cli("status", "--target", "both", "--json")
        assert status.returncode == 1 and json_out(status)["drift"] == [f"ssh://{host2}"], status.stdout

        app.fault(1, False)
        rerun = app.cli("release", "--target", "both", "--json")
        assert rerun.returncode == 0, rerun.stderr
        rows = {h["host"]: h for h in json_out(rerun)["hosts"]}
        assert rows[f"ssh://{hosts.hosts[0].alias}"]["outcome"] == "noop"
        assert rows[f"ssh://{host2}"]["outcome"] == "ok"
        # One number for the release across the fleet: the rerun gives the second host r2, as the first.
        assert rows[f"ssh://{host2}"]["release"] == rows[f"ssh://{hosts.hosts[0].alias}"]["release"] == "r2", rows
        assert json_out(rerun)["bytes_shipped"] == 0  # shipped by the failed run already
        assert "building" not in rerun.stderr, rerun.stderr  # no new build
        assert app.serving(0) == app.serving(1) == "v2"
        assert app.cli("status", "--target", "both").returncode == 0

        app.fault(0, True)  # now the canary fails: the other host is not started
        app.write("v3")
        stopped = app.cli("release", "--target", "both", "--json")
        assert stopped.returncode == 1, stopped.stderr
        rows = {h["host"]: h for h in json_out(stopped)["hosts"]}
        assert rows[f"ssh://{hosts.hosts[0].alias}"]["outcome"] == "failed"
        assert rows[f"ssh://{host2}"]["outcome"] == "not started"
        assert "was not started" in stopped.stderr
        assert app.serving(0) == app.serving(1) == "v2"
        h2 = json_out(app.cli("history", "--target", "both", "--json"))["hosts"][1]["releases"]
        assert h2[-1]["outcome"] == "ok" and h2[-1]["release"] != "r4"  # nothing was recorded there
    finally:
        app.cleanup()


def test_unknown_and_changed_host_keys_are_refused(app: RemoteApp) -> None:
    hosts = app.hosts
    host = hosts.hosts[0]
    try:
        hosts.known_hosts.write_text("")
        refused = app.cli("release", "--host", host.url, "--identity", str(hosts.key))
        assert refused.returncode == 2, refused.stderr
        line = refused.stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: {host.url}: the host key of {host.known_as} is unknown") and \
            "--accept-new-host-key" in line, refused.stderr
        assert not host.docker("ps", "-aq", "--filter", f"label=io.immutdock.app={app.name}").stdout.strip()

        # A changed key (here: another host's key recorded under this one's name) is refused,
        # even when new keys are accepted.
        other = hosts.hosts[1].host_key_line().split()
        assert other[2] != host.host_key_line().split()[2]
        hosts.known_hosts.write_text(f"{host.known_as} {other[1]} {other[2]}\n")
        changed = app.cli("status", "--host", host.url, "--identity", str(hosts.key), "--accept-new-host-key")
        assert changed.returncode == 2, changed.stderr
        assert "CHANGED" in changed.stderr and "ssh-keygen -R" in changed.stderr, changed.stderr

        hosts.known_hosts.write_text("")
        accepted = app.cli("status", "--host", host.url, "--identity", str(hosts.key), "--accept-new-host-key")
        assert accepted.returncode == 0, accepted.stderr
        assert hosts.known_hosts.read_text().split()[:3] == host.host_key_line().split()[:3]
    finally:
        hosts.trust_all()


def test_the_target_lock_refuses_a_concurrent_release(app: RemoteApp) -> None:
    hosts = app.hosts
    target = Target(name="t", hosts=(hosts.hosts[1].url,))
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(hosts.home)  # the test reaches the host as immutdock does
    try:
        opened = open_hosts(target, hosts.key, False)
    finally:
        os.environ["HOME"] = old_home or ""
    try:
        lock.acquire(opened[0].engine, app.name, "release", lambda _m: None)  # this live process holds it
        held = app.cli("release", "--target", "both")
        assert held.returncode == 3, held.stderr
        assert f"ssh://{hosts.hosts[1].alias}" in held.stderr, held.stderr
        # Nothing changed on either host, and the first host's lock (taken first) was freed.
        for h in hosts.hosts:
            names = h.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
            assert not [n for n in names if app.name in n and "lock" not in n], names
        assert f"immutdock.{app.name}.lock" not in hosts.hosts[0].docker("ps", "-a", "--format",
                                                                         "{{.Names}}").stdout
        refused = app.cli("unlock", "--target", "both")
        assert refused.returncode == 2, refused.stderr  # its holder (this test) still runs here
        freed = app.cli("unlock", "--target", "both", "--force", "--json")
        assert freed.returncode == 0, freed.stderr
        rows = json_out(freed)["hosts"]
        assert rows[0]["held_by"] is None and "release" in rows[1]["held_by"], rows
        ok = app.cli("release", "--target", "both")
        assert ok.returncode == 0, ok.stderr
    finally:
        close_hosts(opened)


def test_verify_heal_and_volume_backups_per_host(app: RemoteApp, tmp_path: Path) -> None:
    assert app.cli("release", "--target", "both").returncode == 0
    first, second = app.hosts.hosts
    verified = app.cli("verify", "--target", "both", "--json")  # each host's release, against this checkout
    assert verified.returncode == 0, verified.stderr
    rows = json_out(verified)["hosts"]
    assert [(r["host"], r["release"], [(i["service"], i["content_hash_equal"], i["image_id_equal"] is not None)
                                       for i in r["images"]]) for r in rows] == [
        (f"ssh://{h.alias}", "r1", [("web", True, True)]) for h in (first, second)], rows
    assert rows[0]["images"][0]["recorded_id"] == first.docker("image", "inspect", "-f", "{{.Id}}",
                                                               rows[0]["images"][0]["image"]).stdout.strip()
    assert verified.stderr.count("rebuilding") == 1, verified.stderr  # the same image on both: rebuilt once
    (app.root / "web" / "version").write_text("v9\n")
    changed = app.cli("verify", "--target", "both", "--no-rebuild")
    assert changed.returncode == 1 and changed.stdout.count("file version changed") == 2, changed.stdout
    (app.root / "web" / "version").write_text("v1\n")

    web = first.docker("ps", "-q", "--filter", f"label=io.immutdock.app={app.name}", "--filter",
                       "label=io.immutdock.role=color").stdout.split()[0]
    first.docker("exec", web, "sh", "-c", "echo edited > /www/version")  # a snowflake on the first host
    assert app.serving(0) == "edited"
    healed = app.cli("heal", "--target", "both", "--json")
    assert healed.returncode == 0, healed.stderr
    rows = json_out(healed)["hosts"]
    assert [(r["outcome"], r.get("kind")) for r in rows] == [("ok", "heal"), ("noop", None)], rows
    assert app.serving(0) == app.serving(1) == "v1"
    assert json_out(app.cli("drift", "--target", "both", "--json"))["outcome"] == "no drift"

    app.fault(0, False)  # the flags volume, with a file in it, on each host
    for host in (first, second):
        folder = host.docker("volume", "inspect", "-f", "{{.Mountpoint}}", f"{app.name}_flags").stdout.strip()
        host.sh(f"echo {host.alias} > {folder}/owner")
    backups = tmp_path / "backups"
    made = app.cli("volumes", "backup", "--target", "both", "--to", str(backups), "--verify", "--json")
    assert made.returncode == 0, made.stderr
    rows = json_out(made)["backups"]
    assert [(r["host"], r["volume"], r["files"], r["verified"]) for r in rows] == [
        (f"ssh://{first.alias}", "flags", 1, True), (f"ssh://{second.alias}", "flags", 1, True)], rows
    for r, host in zip(rows, (first, second)):  # each host's backup in its own folder here
        assert Path(r["archive"]).parent == backups / host.alias
        with tarfile.open(r["archive"], "r:gz") as tar:
            assert tar.extractfile("./owner").read() == f"{host.alias}\n".encode()
    listed = json_out(app.cli("volumes", "ls", "--target", "both", "--to", str(backups), "--json"))["volumes"]
    assert [(v["host"], len(v["backups"])) for v in listed] == [(f"ssh://{first.alias}", 1),
                                                                (f"ssh://{second.alias}", 1)], listed

    two = app.cli("volumes", "restore", rows[0]["archive"], "--target", "both", "--into", "copy")
    assert two.returncode == 2 and "name one with --host" in two.stderr, two.stderr
    moved = app.cli("volumes", "restore", rows[0]["archive"], "--host", second.alias, "--into", "copy", "--json")
    assert moved.returncode == 0, moved.stderr  # the first host's data, into a new volume on the second
    folder = second.docker("volume", "inspect", "-f", "{{.Mountpoint}}", f"{app.name}_copy").stdout.strip()
    assert second.sh(f"cat {folder}/owner").stdout == f"{first.alias}\n"

    # A dump and a load are a streamed exec: over SSH, its input reaches its end, and its
    # output and exit code come back (the tunnel passes the half-close through).
    hosts = app.hosts
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(hosts.home)
    try:
        opened = open_hosts(Target(name="t", hosts=(hosts.hosts[0].url,)), hosts.key, False)
    finally:
        os.environ["HOME"] = old_home or ""
    try:
        engine = opened[0].engine
        running = [c for c in engine.containers(**{"io.immutdock.app": app.name, "io.immutdock.role": "color"})
                   if c.status == "running"][0]
        sent = os.urandom(3 << 20)
        out: list[bytes] = []
        code, errors = engine.exec_stream(running.id, ["sh", "-c", "md5sum; echo said >&2; exit 3"], "a test",
                                          stdin=(sent[i:i + 65536] for i in range(0, len(sent), 65536)),
                                          stdout=out.append)
        assert (code, errors) == (3, "said\n")
        assert b"".join(out).split()[0].decode() == hashlib.md5(sent).hexdigest()
    finally:
        close_hosts(opened)


def test_a_dump_backup_on_a_host_verifies_and_loads_into_a_new_volume_there(app: RemoteApp, tmp_path: Path) -> None:
    compose = app.root / "compose.yaml"  # a stateful db whose volume has a dump command (tar, of busybox)
    compose.write_text(compose.read_text().replace("volumes:\n  flags: {}\n", textwrap.dedent("""\
          db:
            image: busybox:latest
            init: true
            command: ["sh", "-c", "test -e /data/n || hostname > /data/n; exec sleep 86400"]
            volumes: ["data:/data"]
            healthcheck: {test: ["CMD", "test", "-e", "/data/n"], interval: 1s}
        volumes:
          flags: {}
          data: {}
        """)) + "  stateful: [db]\n  volumes:\n    data: {dump: tar -C /data -cf - ., load: tar -C /data -xf -}\n")
    first = app.hosts.hosts[0]
    assert app.cli("release", "--host", first.alias).returncode == 0
    backups = tmp_path / "backups"
    made = app.cli("volumes", "backup", "data", "--host", first.alias, "--to", str(backups), "--verify", "--json")
    assert made.returncode == 0, made.stderr
    row = json_out(made)["backups"][0]
    assert (row["kind"], row["stopped"], row["verified"]) == ("dump", [], True), row
    assert "starting a copy of db on volume immutdock-verify-" in made.stderr, made.stderr
    with tarfile.open(row["archive"], "r:gz") as tar:
        written = tar.extractfile("./n").read()
    assert written.strip(), written
    moved = app.cli("volumes", "restore", row["archive"], "--host", first.alias, "--into", "copy")
    assert moved.returncode == 0, moved.stderr
    folder = first.docker("volume", "inspect", "-f", "{{.Mountpoint}}", f"{app.name}_copy").stdout.strip()
    assert first.sh(f"cat {folder}/n").stdout.encode() == written
    assert not [v for v in first.docker("volume", "ls", "-q").stdout.split() if v.startswith("immutdock-verify-")]


def test_a_stateful_recreate_killed_on_a_host_is_named_and_finished_by_the_next_command(
        app: RemoteApp) -> None:
    """Over SSH the recreate's compose reaches the host through immutdock, so it dies with it,
    leaving the db stopped: `status` names the recreate cut short, `status --reap` finishes it
    (one db, the new definition), and the next release has nothing left to do."""
    first = app.hosts.hosts[0]
    compose = app.root / "compose.yaml"
    base = compose.read_text()

    def write(generation: int) -> None:  # PID 1 `sleep` ignores SIGTERM: each stop takes 4 s
        compose.write_text(base.replace("volumes:\n  flags: {}\n", textwrap.dedent(f"""\
              db:
                image: busybox:latest
                command: ["sleep", "86400"]
                stop_grace_period: 4s
                environment: {{GENERATION: "{generation}"}}
                volumes: ["data:/data"]
                healthcheck: {{test: ["CMD", "true"], interval: 1s}}
            volumes:
              flags: {{}}
              data: {{}}
            """)) + "  stateful: [db]\n")

    def dbs(*status: str) -> list[str]:
        flt = ["--filter", f"label=io.immutdock.app={app.name}", "--filter", "label=com.docker.compose.service=db"]
        flt += [a for s in status for a in ("--filter", f"status={s}")]
        return first.docker("ps", "-aq", *flt).stdout.split()

    write(1)
    assert app.cli("release", "--host", first.alias).returncode == 0
    write(2)
    victim = Background(app.root, "release", "--host", first.alias, env=app.hosts.env)
    victim.wait_for("changes first")
    deadline = time.monotonic() + 60
    while not dbs("created"):  # compose made the new db; it stops the old one now (4 s)
        assert time.monotonic() < deadline and victim.proc.poll() is None, "".join(victim.lines)
        time.sleep(0.05)
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.finish()
    deadline = time.monotonic() + 30
    while dbs("running"):  # the old db's stop, already asked of the host's engine, ends
        assert time.monotonic() < deadline, "the old db still runs"
        time.sleep(0.2)
    time.sleep(2)
    assert not dbs("running"), "a db started again without immutdock"

    status = app.cli("status", "--host", first.alias)
    assert status.returncode == 1, status.stderr
    assert "stateful service db is not running" in status.stderr and "unfinished" in status.stderr, status.stderr
    assert "status --reap" in status.stderr, status.stderr

    reaped = app.cli("status", "--reap", "--host", first.alias, "--json")
    assert reaped.returncode == 0, reaped.stderr
    assert "recreated db" in reaped.stderr, reaped.stderr
    assert json_out(reaped)["hosts"][0]["problem"] is None
    running = dbs("running")
    assert len(running) == 1 and len(dbs()) == 1, first.docker("ps", "-a").stdout
    env = first.docker("inspect", "-f", "{{json .Config.Env}}", running[0]).stdout
    assert "GENERATION=2" in env, env
    assert not first.docker("ps", "-aq", "--filter", f"label=io.immutdock.app={app.name}",
                            "--filter", "label=io.immutdock.role=recreate").stdout.split()
    again = app.cli("release", "--host", first.alias)
    assert again.returncode == 0, again.stderr
    assert dbs("running") == running, "the next release recreated the db again"


def test_ps_ls_logs_exec_run_and_down_on_hosts(app: RemoteApp) -> None:
    """The operate commands through SSH: ps, ls and logs per host, exec and run in one host's
    release (their exit codes and stdin), down on both hosts and nothing of the app left there."""
    def write(version: str) -> None:  # web says its version when it starts
        app.write(version)
        (app.root / "web" / "Dockerfile").write_text(DOCKERFILE.replace(
            'CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]',
            'CMD ["sh", "-c", "echo started $(cat /www/version); exec httpd -f -p 8000 -h /www"]'))

    write("v1")
    assert app.cli("release", "--target", "both").returncode == 0
    first, second = app.hosts.hosts
    ps = app.cli("ps", "--target", "both", "--json")
    assert ps.returncode == 0, ps.stderr
    rows = json_out(ps)["hosts"]
    assert [(r["host"], [(c["role"], c["release"]) for c in r["containers"]]) for r in rows] == [
        (f"ssh://{h.alias}", [("router", None), ("swapped", "r1")]) for h in (first, second)], rows
    listed = json_out(app.cli("ls", "--target", "both", "--json"))["hosts"]
    assert [[(a["app"], a["live_release"], a["health"]) for a in h["apps"]] for h in listed] == [
        [(app.name, "r1", "serving")]] * 2, listed
    logs = app.cli("logs", "--target", "both", "web")
    assert logs.returncode == 0, logs.stderr
    for h in (first, second):
        assert f"ssh://{h.alias} web-1 (blue)" in logs.stdout and "started v1" in logs.stdout, logs.stdout

    one = ("--host", first.alias)
    assert app.cli("exec", "--target", "both", "web", "true").returncode == 2  # two hosts: which one?
    shown = app.cli("exec", *one, "web", "cat", "/www/version")
    assert (shown.returncode, shown.stdout) == (0, "v1\n"), shown.stderr
    fed = subprocess.run([*IMMUTDOCK, "exec", *one, "-i", "web", "sh", "-c", "cat; exit 4"], cwd=app.root,
                         input="over ssh\n", capture_output=True, text=True, timeout=120,
                         env={**os.environ, **app.hosts.env})
    assert (fed.returncode, fed.stdout) == (4, "over ssh\n"), fed.stderr
    ran = app.cli("run", *one, "web", "sh", "-c", "cat /www/version; exit 6")
    assert (ran.returncode, ran.stdout) == (6, "v1\n"), ran.stderr
    assert len(first.docker("ps", "-aq", "--filter", f"label=io.immutdock.app={app.name}").stdout.split()) == 2

    follow = Background(app.root, "logs", "--target", "both", "-f", "web", env=app.hosts.env)
    try:
        _until(follow, lambda seen: seen.count("started v1") == 2)
        write("v2")
        assert app.cli("release", "--target", "both").returncode == 0
        _until(follow, lambda seen: seen.count("started v2") == 2)
    finally:
        follow.proc.send_signal(signal.SIGINT)
        follow.finish()
    streamed = [" ".join(line.split()) for line in _peek(follow).splitlines()]  # (prefixes are padded)
    for h in (first, second):  # each host's old color, then its new one
        old, new = (f"ssh://{h.alias} web-1 ({c}) | started {v}" for c, v in (("blue", "v1"), ("green", "v2")))
        assert old in streamed and new in streamed and streamed.index(old) < streamed.index(new), streamed
    assert not [line for line in streamed if "EOF" in line], streamed  # nothing of the CLI's as the follow ends

    gone = app.cli("down", "--target", "both", "--yes", "--json")
    assert gone.returncode == 0, gone.stderr
    assert [h["outcome"] for h in json_out(gone)["hosts"]] == ["removed", "removed"], gone.stdout
    label = f"label=io.immutdock.app={app.name}"

    def left(h: object) -> dict[str, list[str]]:
        return {kind: h.docker(*cmd, "--filter", label).stdout.split()  # type: ignore[attr-defined]
                for kind, cmd in {"containers": ("ps", "-aq"), "networks": ("network", "ls", "-q"),
                                  "images": ("image", "ls", "-q"), "volumes": ("volume", "ls", "-q")}.items()}

    for h in (first, second):
        found = left(h)
        assert found == {"containers": [], "networks": [], "images": [],
                         "volumes": found["volumes"]} and len(found["volumes"]) == 1, found  # the flags volume stays
    backups = app.root.parent / "backups"
    data = app.cli("down", "--target", "both", "--yes", "--volumes", "--backup-to", str(backups), "--json")
    assert data.returncode == 0, data.stderr
    rows = json_out(data)["hosts"]
    assert [[(b["volume"], b["verified"]) for b in r["backups"]] for r in rows] == [[("flags", True)]] * 2, rows
    for h in (first, second):  # each host's backup in its folder here, then its volume gone
        assert (backups / h.alias).is_dir() and left(h)["volumes"] == [], h.alias
    again = app.cli("down", "--target", "both", "--yes", "--json")
    assert [h["outcome"] for h in json_out(again)["hosts"]] == ["nothing to remove"] * 2, again.stdout


def _until(follow: Background, done: Callable[[str], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not done(_peek(follow)):
        assert follow.proc.poll() is None and time.monotonic() < deadline, (_peek(follow), follow.lines)
        time.sleep(0.3)


def _peek(follow: Background) -> str:
    """What a command in the background printed on stdout so far (read without waiting)."""
    import select

    fd = follow.proc.stdout.fileno()
    os.set_blocking(fd, False)
    seen = getattr(follow, "seen", "")
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        seen += chunk.decode()
    follow.seen = seen  # type: ignore[attr-defined]
    return seen


def test_an_nginx_with_its_config_bind_baked_serves_that_config_on_a_host(hosts: SshHosts, tmp_path: Path,
                                                                          app_name: str) -> None:
    """A project bind reaches an SSH host inside the release image: the host has no project."""
    from .support import cleanup
    from .test_binds import nginx_app, stock_image

    image = stock_image()
    root = nginx_app(tmp_path / "app", app_name, image, "8080", "config-on-the-host")
    host = hosts.hosts[0]
    try:
        done = run_cli(root, "release", "--host", host.alias, env=hosts.env, timeout=900)
        assert done.returncode == 0, done.stderr
        assert get(host.app_url, "/version")[1].strip() == "config-on-the-host"
        # The site's files are in the image there. (Read as root: the test hosts' engine, on its vfs
        # storage driver, makes every container's / mode 0700, so nginx's www-data workers could
        # not open a file on them; an engine on overlay2 keeps / at 0755.)
        web = host.docker("ps", "-q", "--filter", f"label=io.immutdock.app={app_name}", "--filter",
                          "label=com.docker.compose.service=web").stdout.split()
        assert host.docker("exec", web[0], "cat", "/usr/share/nginx/html/index.html").stdout == "page-v1\n"
        assert host.sh(f"test -e {root} && echo found || echo none").stdout.strip() == "none"  # no project there
    finally:
        found = host.docker("ps", "-aq", "--filter", f"label=io.immutdock.app={app_name}").stdout.split()
        if found:
            host.docker("rm", "-f", *found, check=False)
        host.docker("network", "prune", "-f", check=False)
        host.sh(f"docker image ls -q --filter label=io.immutdock.app={app_name} | xargs -r docker rmi -f "
                ">/dev/null 2>&1; docker volume ls -q --filter label=io.immutdock.app={app_name} | "
                "xargs -r docker volume rm -f >/dev/null 2>&1; true")
        cleanup(app_name)
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
