"""`immutdock volumes` on the run's Swarm of three test hosts: a volume is read and written on
the node its stateful service is kept on, that service is stopped for a consistent copy by
scaling it to no task and back (never two tasks at once), a dump runs in its running task,
and a volume each node holds a copy of (one only colors mount) is refused."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import textwrap
from pathlib import Path

import pytest

from .support import json_out, run_cli
from .swarm import SwarmHosts
from .test_swarm_release import _DbWatch, _cleanup, _get, _write

pytestmark = pytest.mark.engine

DEBIAN = "debian:bookworm-slim"


def _app(root: Path, name: str, nodes: list[str]) -> Path:
    """web (busybox, a per-node cache volume) and a Debian stateful db with a files volume and
    one backed up by its dump command."""
    _write(root, name, "v1", nodes)
    text = (root / "compose.yaml").read_text()
    db = ("trap 'exit 0' TERM; date +%s%N >> /data/boots; date +%s%N > /dump/stamp; "
          "sleep 3600 & wait")
    text = text.replace("    secrets: [token]\n", "    secrets: [token]\n    volumes: [\"cache:/cache\"]\n", 1)
    text = text.replace("secrets:\n  token:", textwrap.dedent(f"""\
          db:
            image: {DEBIAN}
            command: ["bash", "-c", {json.dumps(db)}]
            healthcheck: {{test: ["CMD", "test", "-s", "/dump/stamp"], interval: 1s, retries: 5}}
            volumes: ["data:/data", "dumped:/dump"]
        volumes:
          data: {{}}
          dumped: {{}}
          cache: {{}}
        secrets:
          token:"""))
    text = text.replace("x-immutdock:\n", textwrap.dedent("""\
        x-immutdock:
          stateful: [db]
          volumes:
            dumped:
              dump: tar -C /dump -cf - .
              load: tar -C /dump -xf -
        """), 1)
    (root / "compose.yaml").write_text(text)
    return root


def _db_node(swarm: SwarmHosts, app: str) -> int:
    found = [i for i, h in enumerate(swarm.hosts)
             if h.docker("ps", "-q", "--filter", f"label=io.immutdock.app={app}", "--filter",
                         "label=io.immutdock.role=state", "--filter", "status=running").stdout.split()]
    assert len(found) == 1, found
    return found[0]


def _read(host: object, volume: str, path: str) -> str:
    return host.docker("run", "--rm", "-v", f"{volume}:/v:ro", "busybox:latest",  # type: ignore[attr-defined]
                       "cat", f"/v/{path}").stdout


def _volumes(host: object, app: str) -> list[str]:
    return host.docker("volume", "ls", "-q", "--filter",  # type: ignore[attr-defined]
                       f"name={app}").stdout.split()


def test_volumes_are_backed_up_and_restored_on_the_stateful_services_node_never_two_tasks(
        swarm: SwarmHosts, app_name: str, tmp_path: Path) -> None:
    swarm.load("busybox:latest")
    swarm.load(DEBIAN)
    nodes = [h.url for h in swarm.hosts]
    root = _app(tmp_path / "app", app_name, nodes)
    backups = tmp_path / "backups"
    try:
        released = run_cli(root, "release", "--target", "cluster", "--json", env=swarm.env)
        assert released.returncode == 0, released.stderr
        release = json_out(released)["hosts"][0]["release"]
        home = _db_node(swarm, app_name)
        holder = swarm.hosts[home]
        assert len(_read(holder, f"{app_name}_data", "boots").splitlines()) == 1

        # Every volume at once: one only web mounts is on every node, a copy each: refused, nothing written.
        refused = run_cli(root, "volumes", "backup", "--to", str(backups), "--target", "cluster", env=swarm.env)
        assert refused.returncode == 2, refused.stderr
        assert f"volume {app_name}_cache is per node on this swarm" in refused.stderr, refused.stderr
        assert not backups.exists() or not any(backups.rglob("*.gz"))

        with _DbWatch(swarm, app_name) as watch:
            made = run_cli(root, "volumes", "backup", "data", "dumped", "--verify", "--to", str(backups),
                           "--target", "cluster", "--json", env=swarm.env)
            assert made.returncode == 0, made.stderr
            rows = {r["volume"]: r for r in json_out(made)["backups"]}
            data, dumped = rows["data"], rows["dumped"]
            assert (data["kind"], data["stopped"], data["verified"], data["node"], data["release"]) == \
                ("files", ["db"], True, nodes[home], release), data
            assert (dumped["kind"], dumped["stopped"], dumped["verified"], dumped["node"]) == \
                ("dump", [], True, nodes[home]), dumped
            with tarfile.open(data["archive"], "r:gz") as tar:
                archived = tar.extractfile("./boots").read().decode()  # type: ignore[union-attr]
            assert len(archived.splitlines()) == 1
            with gzip.open(dumped["archive"]) as raw, tarfile.open(fileobj=io.BytesIO(raw.read())) as tar:
                stamp = tar.extractfile("./stamp").read().decode()  # type: ignore[union-attr]
            # Scaled to no task for the copy and back: on its node, started once more, with its data.
            assert _db_node(swarm, app_name) == home
            assert _read(holder, f"{app_name}_data", "boots").startswith(archived)
            assert len(_read(holder, f"{app_name}_data", "boots").splitlines()) == 2
            assert [_get(h.app_url) for h in swarm.hosts] == ["v1"] * 3

            # A files backup into a new volume: made on the db's node only.
            into = run_cli(root, "volumes", "restore", data["archive"], "--into", "data2", "--target", "cluster",
                           "--json", env=swarm.env)
            assert into.returncode == 0, into.stderr
            assert (json_out(into)["created"], json_out(into)["node"]) == (True, nodes[home]), into.stdout
            assert _read(holder, f"{app_name}_data2", "boots") == archived
            assert [f"{app_name}_data2" in _volumes(h, app_name) for h in swarm.hosts] == \
                [i == home for i in range(3)]
            # A dump into a new volume: loaded in a copy of the db started on it, there.
            loaded = run_cli(root, "volumes", "restore", dumped["archive"], "--into", "dumped2", "--target",
                             "cluster", "--json", env=swarm.env)
            assert loaded.returncode == 0, loaded.stderr
            assert _read(holder, f"{app_name}_dumped2", "stamp") == stamp
            # Over the live volume: the db stopped meanwhile, started again on the archived data.
            forced = run_cli(root, "volumes", "restore", data["archive"], "--force", "--target", "cluster",
                             env=swarm.env)
            assert forced.returncode == 0, forced.stderr
            boots = _read(holder, f"{app_name}_data", "boots")
            assert boots.startswith(archived) and len(boots.splitlines()) == 2, boots
            assert _db_node(swarm, app_name) == home
        assert watch.looks > 10 and watch.most == 1, (watch.looks, watch.most)

        listed = run_cli(root, "volumes", "ls", "--to", str(backups), "--target", "cluster", "--json",
                         env=swarm.env)
        assert listed.returncode == 0, listed.stderr
        rows_ls = [(r["volume"], r["node"], r["exists"], len(r["backups"])) for r in json_out(listed)["volumes"]]
        assert sorted(rows_ls) == sorted([("cache", n, True, 0) for n in nodes]
                                         + [("data", nodes[home], True, 1), ("dumped", nodes[home], True, 1)]), \
            rows_ls
        checked = run_cli(root, "volumes", "verify", dumped["archive"], "--target", "cluster", env=swarm.env)
        assert checked.returncode == 0, checked.stderr
        for host in swarm.hosts:  # no scratch volume or helper container left
            assert not [v for v in host.docker("volume", "ls", "-q").stdout.split() if v.startswith("immutdock-verify")]
            assert not host.docker("ps", "-aq", "--filter", "label=io.immutdock.role=volume-helper").stdout.split()
    finally:
        _cleanup(swarm, app_name)
