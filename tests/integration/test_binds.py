"""Project binds are release content, on the real engine: an nginx (Debian's, a stock image to
immutdock) whose config and site come only from binds of the project gets them baked into its
release image: an edited config is a release, served with zero failed requests; a rollback
serves the old config; an edit inside the container is drift. What is not baked: a UDP service
is replaced stop-first with its gap printed, a host folder of data keeps its service stateful
and never doubled, a self-built redis keeps its data across a release. And the records say
what was released: a dirty checkout is marked, a rollback shows its release's revision."""

from __future__ import annotations

import subprocess
import textwrap
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from .support import DEBIAN_APPS, Load, StateWatch, cleanup, free_port, get, json_out, run_cli

pytestmark = pytest.mark.engine

STOCK = DEBIAN_APPS  # Debian's nginx and redis (the apt layer test_drift_truth builds: cached once)
CONFIG = """\
server {{
  listen 8000;
  root /usr/share/nginx/html;
  location = /version {{ default_type text/plain; return 200 "{version}\\n"; }}
  location = /healthz {{ default_type text/plain; return 200 "ok\\n"; }}
}}
"""


def stock_image() -> str:
    """A Debian nginx + redis image under a name of its own: to immutdock a pulled stock image
    (remove it with `docker rmi`)."""
    name = f"itstock-{uuid.uuid4().hex[:8]}:1"
    proc = subprocess.run(["docker", "build", "-q", "-t", name, "-"], input=STOCK + 'CMD ["nginx", "-g", '
                          '"daemon off;"]\n', capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return name


@pytest.fixture(scope="module")
def stock(engine) -> Iterator[str]:
    name = stock_image()
    yield name
    subprocess.run(["docker", "rmi", "-f", name], capture_output=True)


def nginx_app(root: Path, name: str, image: str, publish: str, version: str) -> Path:
    """nginx whose config (./nginx/app.conf, :ro) and site (./html) come only from binds."""
    (root / "nginx").mkdir(parents=True, exist_ok=True)
    (root / "html").mkdir(exist_ok=True)
    (root / "nginx" / "app.conf").write_text(CONFIG.format(version=version))
    (root / "html" / "index.html").write_text("page-v1\n")
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        services:
          web:
            image: {image}
            volumes:
              - ./nginx/app.conf:/etc/nginx/conf.d/app.conf:ro
              - ./html:/usr/share/nginx/html:ro
            ports: ["{publish}:8000"]
            stop_grace_period: 5s
        x-immutdock:
          router: {{service: web, health: {{path: /healthz}}}}
          settle: 1
        """))
    return root


def _web(engine, app: str) -> str:
    found = engine.containers.list(filters={"label": [f"io.immutdock.app={app}", "com.docker.compose.service=web"]})
    assert len(found) == 1, found
    return found[0].id


def test_an_nginx_config_bind_is_baked_released_rolled_back_and_watched_for_drift(
        tmp_path: Path, engine, app_name: str, stock: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    root = nginx_app(tmp_path / "app", app_name, stock, f"127.0.0.1:{port}", "config-v1")
    try:
        first = run_cli(root, "release")
        assert first.returncode == 0, first.stderr
        assert get(url, "/version")[1].strip() == "config-v1" and get(url, "/")[1].strip() == "page-v1"
        # The files are in the image, not bound: the container mounts nothing of the project.
        mounts = engine.api.inspect_container(_web(engine, app_name))["Mounts"]
        assert not [m for m in mounts if m.get("Type") == "bind"], mounts
        (root / "nginx" / "app.conf").write_text(CONFIG.format(version="config-v2"))
        plan = json_out(run_cli(root, "plan", "--json"))
        assert plan["noop"] is False, plan
        baked = next(i for i in plan["images"] if i["service"] == "web")["baked"]
        assert [b["target"] for b in baked["binds"]] == ["/etc/nginx/conf.d/app.conf", "/usr/share/nginx/html"]
        with Load(url, path="/version") as load:
            second = run_cli(root, "release")
            time.sleep(0.5)
        assert second.returncode == 0, second.stderr
        assert load.failures == [] and load.ok > 20, (load.failures[:5], load.ok)
        assert get(url, "/version")[1].strip() == "config-v2"
        again = run_cli(root, "release")
        assert again.returncode == 0 and "nothing to release" in again.stdout, again.stdout + again.stderr
        back = run_cli(root, "rollback")
        assert back.returncode == 0, back.stderr
        assert get(url, "/version")[1].strip() == "config-v1"  # the old config, from r1's image
        verified = run_cli(root, "verify", "--release", "r2", "--json")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert [i["content_hash_equal"] for i in json_out(verified)["images"]] == [True], verified.stdout
        (root / "html" / "index.html").write_text("page-v2\n")
        differs = run_cli(root, "verify", "--release", "r2")
        assert differs.returncode == 1 and "bind ./html at /usr/share/nginx/html changed" in differs.stdout, \
            differs.stdout
        # An edit inside the container of a baked file is drift.
        subprocess.run(["docker", "exec", _web(engine, app_name), "sh", "-c",
                        "echo edited > /usr/share/nginx/html/index.html"], check=True)
        drift = run_cli(root, "drift", "--json")
        assert drift.returncode == 1, drift.stdout + drift.stderr
        found = [(f["kind"], f["paths"]) for f in json_out(drift)["drift"] if f["service"] == "web"]
        assert [f for f in found if f[0] != "runtime-write"] == [
            ("filesystem", ["/usr/share/nginx/html/index.html"])], found  # nginx's own writes are runtime writes
    finally:
        cleanup(app_name)


def test_udp_a_host_folder_and_a_self_built_redis_keep_one_container_and_their_data(
        tmp_path: Path, engine, app_name: str, stock: str) -> None:
    root = tmp_path / "app"
    (root / "redis").mkdir(parents=True)
    (root / "redis" / "Dockerfile").write_text(STOCK + 'CMD ["redis-server", "--protected-mode", "no"]\n')
    hostdata = tmp_path / "host-data"  # outside the project: the host's folder of data
    hostdata.mkdir()
    udp, web_port = free_port(), free_port()

    def write(version: str) -> None:
        (root / "compose.yaml").write_text(textwrap.dedent(f"""\
            name: {app_name}
            services:
              dns:
                image: busybox:latest
                command: ["sh", "-c", "echo {version} >> /data/boots; exec sleep 3600"]
                ports: ["127.0.0.1:{udp}:5353/udp"]
                volumes: ["{hostdata}:/data"]
                stop_grace_period: 1s
              redis:
                build: ./redis
                stop_grace_period: 5s
              web:
                image: busybox:latest
                command: ["httpd", "-f", "-p", "8000", "-h", "/"]
                ports: ["127.0.0.1:{web_port}:8000"]
            x-immutdock:
              settle: 0
            """))

    try:
        write("v1")
        plan = json_out(run_cli(root, "plan", "--json"))
        roles = {r["service"]: r for r in plan["roles"]}
        assert roles["dns"]["role"] == "stateful" and "UDP port" in roles["dns"]["reason"], roles
        assert roles["redis"]["role"] == "stateful" and "starts redis-server" in roles["redis"]["reason"], roles
        first = run_cli(root, "release")
        assert first.returncode == 0, first.stderr
        redis = engine.containers.list(filters={"label": [f"io.immutdock.app={app_name}",
                                                          "com.docker.compose.service=redis"]})[0]
        assert redis.exec_run(["redis-cli", "set", "session", "kept"]).exit_code == 0
        watch = StateWatch(engine, app_name, service="dns")
        watch.start()
        try:
            write("v2")
            second = run_cli(root, "release")
        finally:
            watch.stop.set()
            watch.join()
        assert second.returncode == 0, second.stderr
        assert "stateful dns replaced stop-first: a gap of at most" in second.stderr, second.stderr
        assert watch.most == 1 and len(watch.ids) == 2, (watch.most, watch.ids)  # never two at once
        assert (hostdata / "boots").read_text().split() == ["v1", "v2"]  # the host's folder, kept
        redis = engine.containers.list(filters={"label": [f"io.immutdock.app={app_name}",
                                                          "com.docker.compose.service=redis"]})[0]
        assert redis.exec_run(["redis-cli", "get", "session"]).output.decode().strip() == "kept"
    finally:
        cleanup(app_name)


def test_a_dirty_checkout_is_marked_and_a_rollback_row_shows_its_releases_revision(
        tmp_path: Path, engine, app_name: str) -> None:
    root = tmp_path / "app"
    root.mkdir()
    port = free_port()
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {app_name}
        services:
          web:
            image: busybox:latest
            command: ["sh", "-c", "cp -r /site /tmp/www; exec httpd -f -p 8000 -h /tmp/www"]
            volumes: ["./site:/site:ro"]
            ports: ["127.0.0.1:{port}:8000"]
        x-immutdock:
          settle: 0
        """))
    (root / "site").mkdir()
    (root / "site" / "index.html").write_text("one\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                              check=True, capture_output=True, text=True).stdout.strip()

    try:
        git("init", "-q")
        git("add", ".")
        git("commit", "-qm", "one")
        clean = git("rev-parse", "HEAD")
        assert run_cli(root, "release").returncode == 0
        (root / "site" / "index.html").write_text("two, not committed\n")
        dirty = run_cli(root, "release")
        assert dirty.returncode == 0, dirty.stderr
        assert get(f"http://127.0.0.1:{port}", "/")[1].strip() == "two, not committed"
        assert run_cli(root, "rollback").returncode == 0
        rows = json_out(run_cli(root, "history", "--json"))
        assert [(r["kind"], r["git"]) for r in rows] == [
            ("release", clean), ("release", clean + "_uncommitted"), ("rollback", clean)], rows
        text = run_cli(root, "history").stdout
        assert f"{clean[:12]}_uncommitted" in text, text
    finally:
        cleanup(app_name)
