"""`immutdock drift` tells the truth on the real engine: untouched apps (the README's example, an
nginx, a Python app that writes its bytecode, a redis that saves its dump, all on Debian 12 with
its merged /usr) are no drift; what the engine adds (docker-init) is never reported; a file of
an image edited in a running container is drift that `heal` clears; a file added at run time is
a runtime write, drift only with --strict, and never reported once x-immutdock.drift.ignore
accepts it."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import docker.errors
import pytest
import yaml

from .support import DEBIAN_APPS, cleanup, free_port, json_out, run_cli

pytestmark = pytest.mark.engine
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "counter"


def _drift(root: Path, *args: str) -> tuple[int, list[dict]]:
    proc = run_cli(root, "drift", "--json", *args)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode, json_out(proc)["drift"]


def _remove_images(engine, app: str) -> None:
    for image in engine.images.list(name=f"{app}-*"):
        for tag in image.tags:
            try:
                engine.images.remove(tag, force=True)
            except docker.errors.NotFound:
                pass


def test_the_readmes_example_right_after_its_first_release_is_no_drift(tmp_path: Path, engine, app_name: str
                                                                       ) -> None:
    root = tmp_path / "counter"
    shutil.copytree(EXAMPLE, root)
    model = yaml.safe_load((root / "compose.yaml").read_text())
    model["name"] = app_name
    model["x-immutdock"]["router"]["publish"] = f"127.0.0.1:{free_port()}"
    (root / "compose.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    try:
        released = run_cli(root, "release", timeout=900)
        assert released.returncode == 0, released.stdout + released.stderr
        inits = [c for c in engine.containers.list(filters={"label": f"io.immutdock.app={app_name}"})
                 if c.attrs["HostConfig"].get("Init")]
        assert sorted(c.labels["com.docker.compose.service"] for c in inits) == ["web", "worker"]
        assert "/usr/sbin/docker-init" in [c["Path"] for c in inits[0].diff()]  # the engine's, on merged /usr
        code, found = _drift(root)
        assert (code, found) == (0, []), found
        text = run_cli(root, "drift")
        assert text.returncode == 0 and text.stdout.strip() == "no drift (r1)", text.stdout + text.stderr
        assert "docker-init" not in text.stdout + text.stderr
    finally:
        cleanup(app_name)
        _remove_images(engine, app_name)


DOCKERFILE = DEBIAN_APPS + """\
COPY healthz /var/www/html/healthz
COPY app/ /srv/app/
"""
MAIN = """\
import time

import helper

print(helper.greeting(), flush=True)
while True:
    time.sleep(60)
"""


def _compose(name: str, port: int, block: str = "") -> str:
    return textwrap.dedent(f"""\
        name: {name}
        services:
          web:
            build: .
            command: ["nginx", "-g", "daemon off;"]
            stop_grace_period: 5s
          py:
            build: .
            command: ["python3", "/srv/app/main.py"]
            init: true
            stop_grace_period: 2s
          redis:
            build: .
            command: ["redis-server", "--dir", "/data", "--save", "1", "1", "--protected-mode", "no"]
            volumes: ["rdata:/data"]
        volumes:
          rdata: {{}}
        x-immutdock:
          router:
            service: web
            port: 80
            publish: "127.0.0.1:{port}"
            health: {{path: /healthz, timeout: 60}}
          stateful: [redis]
          keep: 3
          settle: 1
        """) + block


def _container(engine, app: str, service: str):
    found = engine.containers.list(filters={"label": [f"io.immutdock.app={app}",
                                                      f"com.docker.compose.service={service}"]})
    assert len(found) == 1, found
    return found[0]


def _kinds(found: list[dict], service: str) -> list[tuple[str, list[str]]]:
    return [(f["kind"], f["paths"]) for f in found if f["service"] == service]


def test_nginx_python_and_redis_untouched_are_no_drift_an_edit_is_healed_an_added_file_is_a_runtime_write(
        tmp_path: Path, engine, app_name: str) -> None:
    root = tmp_path / "app"
    (root / "app").mkdir(parents=True)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "healthz").write_text("ok\n")
    (root / "app" / "main.py").write_text(MAIN)
    (root / "app" / "helper.py").write_text('def greeting():\n    return "hello"\n')
    port = free_port()
    (root / "compose.yaml").write_text(_compose(app_name, port))
    try:
        released = run_cli(root, "release", timeout=900)
        assert released.returncode == 0, released.stdout + released.stderr
        redis = _container(engine, app_name, "redis")
        for command in (["redis-cli", "set", "visits", "1"], ["redis-cli", "save"], ["test", "-s", "/data/dump.rdb"]):
            done = redis.exec_run(command)
            assert done.exit_code == 0, (command, done.output)
        py = _container(engine, app_name, "py")
        assert py.exec_run(["test", "-d", "/srv/app/__pycache__"]).exit_code == 0  # it wrote its bytecode

        code, found = _drift(root)  # untouched: runtime writes, no drift
        assert code == 0 and not [f for f in found if f["kind"] != "runtime-write"], found
        assert _kinds(found, "py") == [("runtime-write", ["/srv/app/__pycache__"])], found
        web = _kinds(found, "web")  # its temp folders, and its log once a request came
        assert [k for k, _p in web] == ["runtime-write"] and "/var/lib/nginx/body" in web[0][1], found
        assert all(p.startswith(("/var/lib/nginx/", "/var/log/nginx/")) for p in web[0][1]), found
        assert _kinds(found, "redis") == [] and "docker-init" not in str(found), found

        assert py.exec_run(["sh", "-c", "echo '# edited' >> /srv/app/helper.py"]).exit_code == 0  # a snowflake
        code, found = _drift(root)
        edits = [f for f in found if f["kind"] == "filesystem"]
        assert code == 1 and [(f["container"], f["paths"]) for f in edits] == [(py.name, ["/srv/app/helper.py"])]
        assert "changed /srv/app/helper.py" in edits[0]["detail"], edits
        healed = run_cli(root, "heal", "--json")
        assert healed.returncode == 0, healed.stdout + healed.stderr
        assert [f["kind"] for f in json_out(healed)["healed"]] == ["filesystem"], healed.stdout
        code, found = _drift(root)
        assert code == 0 and not [f for f in found if f["kind"] != "runtime-write"], found

        py = _container(engine, app_name, "py")  # the fresh one
        assert py.exec_run(["sh", "-c", "mkdir -p /srv/uploads/2024 && echo x > /srv/uploads/2024/a"]).exit_code == 0
        code, found = _drift(root)
        writes = [f for f in found if f["service"] == "py"]
        assert code == 0 and [(f["kind"], f["paths"]) for f in writes] == [
            ("runtime-write", ["/srv/app/__pycache__", "/srv/uploads"])], found
        assert "volume or tmpfs" in writes[0]["detail"], writes
        strict = run_cli(root, "drift", "--strict", "--json")
        assert strict.returncode == 1 and json_out(strict)["outcome"] == "drift", strict.stdout + strict.stderr
        left = run_cli(root, "heal")  # a runtime write is no drift: nothing to heal
        assert left.returncode == 0 and "nothing to heal" in left.stdout, left.stdout + left.stderr
        assert "not healed: runtime-write" in left.stderr and "--strict" in left.stderr, left.stderr

        accepted = '  drift:\n    ignore: ["/srv/uploads/**", "__pycache__", /var/lib/nginx, "/var/log/nginx/*"]\n'
        (root / "compose.yaml").write_text(_compose(app_name, port, accepted))
        assert _drift(root) == (0, [])  # accepted, and no compose change to release
        strict = run_cli(root, "drift", "--strict", "--json")
        assert strict.returncode == 0 and json_out(strict)["drift"] == [], strict.stdout + strict.stderr
    finally:
        cleanup(app_name)
        _remove_images(engine, app_name)
