"""`immutdock build` on a real engine: content-addressed tags, cache, and what changes them."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .support import TinyApp, cleanup, json_out, run_cli

pytestmark = pytest.mark.engine


def web_tag(cwd: Path, *args: str) -> tuple[str, bool]:
    proc = run_cli(cwd, "build", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    web = next(i for i in json_out(proc) if i["service"] == "web")
    return web["image"], web["cached"]


@pytest.fixture
def tiny(tmp_path: Path, engine: object, app_name: str):
    app = TinyApp(tmp_path / "one", app_name).write()
    (app.root / "web" / ".dockerignore").write_text("notes/\n*.log\n")
    (app.root / "web" / "notes").mkdir()
    (app.root / "web" / "notes" / "todo.txt").write_text("ignored\n")
    yield app
    cleanup(app_name)


def test_second_build_is_cached_with_the_same_tag(tiny: TinyApp) -> None:
    first = json_out(run_cli(tiny.root, "build", "--json"))
    second = json_out(run_cli(tiny.root, "build", "--json"))
    assert {i["service"] for i in first} == {"web", "db"}
    assert all(not i["cached"] for i in first)
    assert all(i["cached"] for i in second)
    assert [(i["image"], i["content_hash"], i["image_id"]) for i in first] == \
        [(i["image"], i["content_hash"], i["image_id"]) for i in second]
    for item in first:
        assert item["image"].startswith(f"{tiny.name}-{item['service']}:")
        assert item["content_hash"].startswith("sha256:")
        assert item["content_hash"][7:19] == item["image"].split(":")[1]


def test_image_labels(tiny: TinyApp, engine) -> None:
    items = json_out(run_cli(tiny.root, "build", "--json"))
    labels = engine.images.get(items[0]["image"]).labels
    assert labels["io.immutdock.content-hash"] == items[0]["content_hash"]
    for key in ("created", "source", "version"):
        assert labels[f"org.opencontainers.image.{key}"]


def test_what_keeps_and_what_changes_the_tag(tiny: TinyApp, tmp_path: Path) -> None:
    tag, _ = web_tag(tiny.root)

    copy = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(tiny.root, copy, symlinks=True)
    assert web_tag(copy) == (tag, True), "a copy at another path must hash the same"

    later = time.time() + 3600
    for path in (copy / "web").rglob("*"):
        os.utime(path, (later, later))
    assert web_tag(copy) == (tag, True), "touching files must not change the tag"

    (copy / "web" / "notes" / "todo.txt").write_text("edited, but ignored\n")
    (copy / "web" / "debug.log").write_text("new ignored file\n")
    assert web_tag(copy) == (tag, True), "ignored files must not change the tag"

    (copy / "web" / "version").write_text("v1-edited\n")
    edited, cached = web_tag(copy)
    assert edited != tag and not cached
    (copy / "web" / "version").write_text("v1\n")
    assert web_tag(copy) == (tag, True)

    (copy / "web" / "healthz").chmod(0o755)
    chmodded, _ = web_tag(copy)
    assert chmodded != tag, "chmod +x must change the tag"
    (copy / "web" / "healthz").chmod(0o644)

    compose = (copy / "compose.yaml").read_text()
    (copy / "compose.yaml").write_text(compose.replace("build: ./web", "build: {context: ./web, args: {BASE: 'busybox:latest', FLAVOUR: x}}"))
    with_arg, _ = web_tag(copy)
    assert with_arg != tag, "a build arg must change the tag"
    (copy / "compose.yaml").write_text(compose)
    assert web_tag(copy) == (tag, True)


def test_base_image_change_changes_the_tag(tiny: TinyApp, engine) -> None:
    base = f"{tiny.name}-base:1"
    engine.images.get("busybox:latest").tag(base)
    compose = (tiny.root / "compose.yaml").read_text()
    (tiny.root / "compose.yaml").write_text(
        compose.replace("build: ./web", f"build: {{context: ./web, args: {{BASE: '{base}'}}}}"))
    try:
        tag, _ = web_tag(tiny.root)
        # The same name now points at a different image (one more file in it).
        subprocess.run(["docker", "build", "-q", "-t", base, "-"], check=True, capture_output=True,
                       input=b"FROM busybox:latest\nRUN echo changed > /changed\n")
        changed, cached = web_tag(tiny.root)
        assert changed != tag and not cached
    finally:
        subprocess.run(["docker", "rmi", "-f", base], capture_output=True)


BAD_CONFIGS = {
    "malformed YAML": ("services:\n  web: [unclosed\n", "line"),
    "unknown x-immutdock key": ("x-immutdock:\n  routr: {}\n", "x-immutdock.routr"),
    "router service not a service": ("x-immutdock:\n  router: {service: nope, port: 8000}\n", "x-immutdock.router.service"),
    "port out of range": ("x-immutdock:\n  router: {service: web, port: 70000}\n", "x-immutdock.router.port"),
    # the routed service cannot be stateful: its hints never suggest it
    "container_name another service refers to": (
        "services:\n  web: {container_name: fixed-web}\n  db: {environment: {WEB_URL: 'http://fixed-web:8000'}}\n",
        "services.web.container_name", "refer to the service name 'web' instead", "stateful"),
    "writable bind mount": ("services:\n  web: {volumes: ['./data:/data']}\n", "services.web.volumes[0]",
                            "holds data, and two colors", "stateful"),
    "routed service in an inactive profile": ("services:\n  web: {profiles: [debug]}\n", "x-immutdock.router.service",
                                              "'web' is in profile debug, which is not active"),
    "stateful service in an inactive profile": ("services:\n  db: {profiles: [ops]}\n", "x-immutdock.stateful[0]",
                                                "COMPOSE_PROFILES=ops"),
    "every service in an inactive profile": ("services:\n  web: {profiles: [a]}\n  db: {profiles: [b]}\n", "services",
                                             "every service is in a profile that is not active"),
    "anonymous volume": ("services:\n  web: {volumes: ['/scratch']}\n", "services.web.volumes[0]"),
    "stateful name not a service": ("x-immutdock:\n  stateful: [ghost]\n", "x-immutdock.stateful[0]"),
    "missing build context": ("services:\n  web: {build: ./nowhere}\n", "services.web.build.context"),
    "missing Dockerfile": ("services:\n  web: {build: {context: ./web, dockerfile: Nope.Dockerfile}}\n",
                           "services.web.build.dockerfile"),
    "app name compose would change": ("name: My.App\n", "name"),
    "secret-looking build arg": ("services:\n  web: {build: {context: ./web, args: {DB_PASSWORD: x}}}\n",
                                 "services.web.build.args.DB_PASSWORD"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_naming_the_key_and_builds_nothing(case: str, tmp_path: Path, engine, app_name: str) -> None:
    overlay, key, *said = BAD_CONFIGS[case]  # said: a phrase the error has, then one it must not have
    app = TinyApp(tmp_path, app_name).write()
    base = (app.root / "compose.yaml").read_text()
    (app.root / "override.yaml").write_text(overlay)
    if case == "malformed YAML":
        (app.root / "compose.yaml").write_text(base + overlay.replace("services:\n", "  bad:\n", 1))
    else:
        merged = _merge(base, overlay)
        (app.root / "compose.yaml").write_text(merged)
    try:
        for command in ("build", "release", "plan"):
            proc = run_cli(app.root, command)
            assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
            assert len(lines) == 1 and key in lines[0], proc.stderr
            assert not said or said[0] in lines[0], lines[0]
            assert len(said) < 2 or said[1] not in lines[0], lines[0]
        assert engine.images.list(filters={"label": f"io.immutdock.app={app_name}"}) == []
        assert engine.containers.list(all=True, filters={"label": f"io.immutdock.app={app_name}"}) == []
        assert engine.volumes.list(filters={"label": f"io.immutdock.app={app_name}"}) == []
    finally:
        cleanup(app_name)


def _merge(base: str, overlay: str) -> str:
    import yaml

    data = yaml.safe_load(base)
    extra = yaml.safe_load(overlay)
    for top, value in extra.items():
        if top == "services":
            for svc, fields in value.items():
                data["services"][svc].update(fields)
        elif top == "x-immutdock":
            data["x-immutdock"].update(value)
        else:
            data[top] = value
    return yaml.safe_dump(data, sort_keys=False)


def test_build_secret_reaches_the_build_but_not_the_image(tiny: TinyApp, engine) -> None:
    import hashlib

    secret = "s3cr3t-value-for-a-test"
    (tiny.root / "token.txt").write_text(secret)
    digest = hashlib.sha256(secret.encode()).hexdigest()  # the Dockerfile checks it without naming it
    (tiny.root / "web" / "Dockerfile").write_text(
        "FROM busybox:latest\n"
        "COPY . /www\n"
        "RUN --mount=type=secret,id=token sha256sum /run/secrets/token | grep -q " + digest
        + " && echo secret-was-mounted > /used\n"
        "RUN chmod +x /www/cgi-bin/* /www/start\n"
        'CMD ["/www/start"]\n')
    compose = (tiny.root / "compose.yaml").read_text()
    compose = compose.replace("build: ./web", "build: {context: ./web, secrets: [token]}")
    (tiny.root / "compose.yaml").write_text(compose + "secrets:\n  token: {file: ./token.txt}\n")
    proc = run_cli(tiny.root, "build", "--json")
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stderr + proc.stdout, "the secret is never printed"
    image = next(i["image"] for i in json_out(proc) if i["service"] == "web")
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
    import io
    import tarfile

    layers = tarfile.open(fileobj=io.BytesIO(saved))
    blob = b""
    files: set[str] = set()
    for member in layers.getmembers():
        handle = layers.extractfile(member)
        if handle is not None:
            inner = handle.read()
            blob += inner
            if member.name.endswith("layer.tar"):
                with tarfile.open(fileobj=io.BytesIO(inner)) as layer:
                    names = layer.getnames()
                    files.update(names)
                    assert not any(n.startswith("run/secrets/token") and n != "run/secrets" for n in names)
    assert "used" in files, "the RUN that checked the mounted secret succeeded"
    assert secret.encode() not in blob, "the secret is in no layer and no config"
