"""Bind mounts as release content: which bind is baked into the image and which stays a bind
(one test per rule), the roles they imply, and the identity of what is baked."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .helpers import anonymous_volume, bind, make_context, port, raises_config, validate
from immutdock.apply.bake import baking_of, dockerfile, hash_binds, plan_bake
from immutdock.apply.build import UNCOMMITTED, git_revision
from immutdock.config import binds
from immutdock.config.infer import Project, resolve
from immutdock.config.settings import parse_settings
from immutdock.errors import ConfigError
from immutdock.identity.contexthash import hash_paths
from immutdock.plan.imageplan import ImagePlan


def _project(tmp_path: Path) -> Path:
    for folder in ("nginx", "html", "empty", "db-data"):
        (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / "nginx" / "default.conf").write_text("server { listen 8000; }\n")
    (tmp_path / "html" / "index.html").write_text("<h1>v1</h1>\n")
    (tmp_path / "db-data" / "base.conf").write_text("x\n")
    return tmp_path


def _kind(tmp_path: Path, source: str, target: str, read_only: bool = False, **extra: Any) -> str:
    return binds.kind(bind(source, target, read_only), tmp_path, **extra).kind


# -- which bind is what ------------------------------------------------------------------------
def test_the_docker_socket_is_a_socket_read_only_or_not(tmp_path: Path) -> None:
    assert _kind(tmp_path, "/var/run/docker.sock", "/var/run/docker.sock") == "socket"
    assert _kind(tmp_path, "/run/docker.sock", "/var/run/docker.sock", read_only=True) == "socket"


def test_a_host_folder_is_data_when_writable_and_the_hosts_own_when_read_only(tmp_path: Path) -> None:
    assert _kind(tmp_path, "/srv/minecraft", "/data") == "host-data"
    assert _kind(tmp_path, "/etc/localtime", "/etc/localtime", read_only=True) == "host-file"


def test_a_project_path_written_relative_that_resolves_outside_it_leaves_the_project(tmp_path: Path) -> None:
    project = tmp_path / "app"
    project.mkdir()
    outside = str(tmp_path / "shared")
    assert binds.kind(bind(outside, "/x", True), project, relative={outside}).kind == "leaves"
    (project / "link").symlink_to(tmp_path)
    assert binds.kind(bind(str(project / "link"), "/x", True), project).kind == "leaves"


def test_a_read_only_project_bind_is_baked_whatever_it_holds(tmp_path: Path) -> None:
    _project(tmp_path)
    assert _kind(tmp_path, str(tmp_path / "db-data"), "/var/lib/postgresql/data", read_only=True) == "bake"
    assert _kind(tmp_path, str(tmp_path / "nginx" / "default.conf"), "/etc/nginx/conf.d/default.conf", True) == "bake"


def test_a_writable_project_bind_of_code_or_a_file_is_baked(tmp_path: Path) -> None:
    _project(tmp_path)
    assert _kind(tmp_path, str(tmp_path / "html"), "/usr/share/nginx/html") == "bake"
    assert _kind(tmp_path, str(tmp_path / "nginx"), "/code") == "bake"
    assert _kind(tmp_path, str(tmp_path / "nginx" / "default.conf"), "/tmp/nginx.conf") == "bake"
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("print()\n")
    assert binds.kind(bind(str(code), "/code"), code).kind == "bake"  # .:/code


@pytest.mark.parametrize(("files", "target"), [
    (["manage.py", "db.sqlite3"], "/code"),  # Django's own database beside its code
    (["index.php", "wp-content/uploads/a.jpg"], "/var/www/html"),  # a folder of uploads inside
    (["configuration.yaml"], "/config"),  # a linuxserver-style config folder the app writes
    (["acme.json"], "/letsencrypt/acme.json"),  # a file the service writes its state to
])
def test_a_writable_folder_or_file_that_holds_data_is_data_even_with_code_in_it(
        tmp_path: Path, files: list[str], target: str) -> None:
    folder = tmp_path / "src"
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x\n")
    source = folder / files[0] if target.endswith(".json") else folder
    assert binds.kind(bind(str(source), target), tmp_path).kind == "data"


def test_a_host_file_without_ro_is_the_hosts_own_not_data(tmp_path: Path) -> None:
    host_file = tmp_path.parent / f"{tmp_path.name}-localtime"
    host_file.write_text("UTC\n")
    project = tmp_path / "app"
    project.mkdir()
    assert binds.kind(bind(str(host_file), "/etc/localtime"), project).kind == "host-file"


def test_a_read_only_view_of_a_folder_of_data_stays_a_bind(tmp_path: Path) -> None:
    _project(tmp_path)
    uploads = tmp_path / "html"
    model = {"name": "shop", "services": {
        "app": {"image": "app:1", "volumes": [bind(str(uploads), "/srv/uploads")]},  # writes: data
        "web": {"image": "nginx:1", "ports": [port(80, "8080")],
                "volumes": [bind(str(uploads), "/usr/share/nginx/html/uploads", True)]}}}
    app = validate(model, {"stateful": ["app"]}, tmp_path)
    assert app.services["web"].bakes == () and len(app.services["web"].definition["volumes"]) == 1
    assert binds.kind(bind(str(uploads), "/x", True), tmp_path, marked=["./html"]).kind == "live"

@pytest.mark.parametrize(("source", "target", "extra"), [
    ("db-data", "/srv/x", {}),  # named like data
    ("html", "/var/lib/postgresql/data", {}),  # at a database's data path
    ("html", "/data", {}),
    ("empty", "/srv/uploads", {}),  # nothing in it: where the service writes
    ("missing", "/srv/files", {}),
    ("html", "/srv/site", {"marked": ["./html"]}),  # x-immutdock.binds.data
    ("html", "/srv/site", {"stateful": True}),  # on a stateful service
])
def test_a_writable_project_bind_is_data_when_anything_says_so(tmp_path: Path, source: str, target: str,
                                                               extra: dict[str, Any]) -> None:
    _project(tmp_path)
    assert _kind(tmp_path, str(tmp_path / source), target, **extra) == "data"


# -- the roles they imply ----------------------------------------------------------------------
def _roles(tmp_path: Path, services: dict[str, Any]) -> dict[str, tuple[str, str]]:
    _, found = resolve({}, services, Project(tmp_path))
    return {r.service: (r.role, r.reason) for r in found}


def test_the_socket_a_host_folder_a_data_folder_and_a_udp_port_make_a_service_stateful(tmp_path: Path) -> None:
    _project(tmp_path)
    found = _roles(tmp_path, {
        "proxy": {"image": "traefik:3", "ports": [port(80, "80")],
                  "volumes": [bind("/var/run/docker.sock", "/var/run/docker.sock")]},
        "game": {"image": "itzg/minecraft-server", "ports": [port(25565, "25565")],
                 "volumes": [bind("/root/minecraft_data", "/data")]},
        "wiki": {"image": "wiki:1", "ports": [port(3000, "3000")], "volumes": [bind(str(tmp_path / "empty"), "/srv/up")]},
        "dns": {"image": "pihole/pihole", "ports": [port(80, "8053"), {**port(53, "53"), "protocol": "udp"}]},
        "site": {"image": "nginx:1", "ports": [port(80, "8080")], "volumes": [bind(str(tmp_path / "html"), "/usr/share/nginx/html")]},
    })
    assert found["proxy"][0] == "stateful" and "Docker socket" in found["proxy"][1]
    assert found["game"][0] == "stateful" and "host folder /root/minecraft_data" in found["game"][1]
    assert "volumes backup` does not cover it" in found["game"][1]
    assert found["wiki"][0] == "stateful" and "stays a bind" in found["wiki"][1]
    assert found["dns"][0] == "stateful" and "UDP port 53:53/udp" in found["dns"][1] and "stop-first" in found["dns"][1]
    assert found["site"][0] == "routed"  # code: baked, so blue/green as before


def test_a_self_built_database_is_stateful_like_its_upstream_image(tmp_path: Path) -> None:
    def built(text: str, **svc: Any) -> dict[str, Any]:
        ctx = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(text)
        return {"build": {"context": str(ctx), "dockerfile": "Dockerfile", **svc.pop("build", {})}, **svc}

    found = _roles(tmp_path, {
        "cache": built("ARG V=7\nFROM redis:${V}-alpine\nCOPY redis.conf /etc/\n"),
        "pg": built("FROM postgres:16 AS base\nFROM base\nRUN echo tuned\n"),
        "own": built("FROM debian:bookworm-slim\nRUN apt-get install -y redis-server\nCMD [\"redis-server\"]\n"),
        "mysql": built("FROM debian:bookworm-slim\nEXPOSE 3306/tcp\n"),
        "started": {"image": "debian:bookworm-slim", "command": ["sh", "-c", "exec mongod --bind_ip_all"]},
        "dev": built("FROM node:20 AS development\nCMD npm start\nFROM postgres:16\n", build={"target": "development"},
                     ports=[port(3000, "3000")]),
        "app": built("FROM python:3.12\nCMD [\"python\", \"app.py\"]\n"),
    })
    assert found["cache"] == ("stateful", "is built FROM redis:7-alpine, a well-known redis image; never doubled "
                                          "(list it under x-immutdock.swapped if it keeps no data)")
    assert found["pg"][0] == "stateful" and "FROM postgres:16" in found["pg"][1]
    assert found["own"][0] == "stateful" and "starts redis-server" in found["own"][1]
    assert found["mysql"][0] == "stateful" and "EXPOSEs MySQL/MariaDB's port 3306" in found["mysql"][1]
    assert found["started"][0] == "stateful" and "command starts mongod" in found["started"][1]
    assert found["dev"][0] == "routed"  # build.target: the node stage, not the last one
    assert found["app"][0] == "swapped"


# -- what validate makes of them ---------------------------------------------------------------
def test_baked_binds_leave_the_definition_and_a_writable_one_is_warned_about(tmp_path: Path) -> None:
    _project(tmp_path)
    model = {"name": "shop", "services": {"web": {
        "image": "nginx:1", "ports": [port(8000, "8080")],
        "volumes": [bind(str(tmp_path / "nginx" / "default.conf"), "/etc/nginx/conf.d/default.conf", True),
                    bind(str(tmp_path / "html"), "/usr/share/nginx/html"), anonymous_volume("/usr/share/nginx/html/x"),
                    bind("/etc/localtime", "/etc/localtime", True)]}}}
    app = validate(model, None, tmp_path)
    web = app.services["web"]
    assert [(b.source, b.target, b.writable, b.folder) for b in web.bakes] == [
        ("nginx/default.conf", "/etc/nginx/conf.d/default.conf", False, False),
        ("html", "/usr/share/nginx/html", True, True)]
    assert [m["target"] for m in web.definition["volumes"]] == ["/etc/localtime"]  # the host's own file stays
    assert any("./html:/usr/share/nginx/html is writable" in w for w in app.warnings), app.warnings
    assert any("anonymous volume at /usr/share/nginx/html/x is left out" in w for w in app.warnings), app.warnings


def test_a_bake_a_volume_would_hide_stays_a_bind_and_bakes_go_shallowest_first(tmp_path: Path) -> None:
    _project(tmp_path)
    model = {"name": "shop", "services": {"web": {"image": "nextcloud:1", "ports": [port(80, "8080")], "volumes": [
        bind(str(tmp_path / "nginx" / "default.conf"), "/srv/app/settings.conf", True),
        bind(str(tmp_path / "html"), "/srv/app", True),
        {"type": "volume", "source": "nc", "target": "/var/www/html", "volume": {}},
        bind(str(tmp_path / "nginx" / "default.conf"), "/var/www/html/config/custom.config.php", True)]}},
        "volumes": {"nc": {"name": "shop_nc"}}}
    app = validate(model, {"swapped": ["web"], "router": {"service": "web", "port": 80}}, tmp_path)
    web = app.services["web"]
    assert [b.target for b in web.bakes] == ["/srv/app", "/srv/app/settings.conf"]  # as Docker mounts them
    assert [m["target"] for m in web.definition["volumes"]] == ["/var/www/html", "/var/www/html/config/custom.config.php"]
    assert any("covers it" in w for w in app.warnings), app.warnings


def test_an_anonymous_volume_of_installed_dependencies_is_left_out(tmp_path: Path) -> None:
    model = {"name": "shop", "services": {"web": {"image": "node:20", "ports": [port(3000, "3000")],
                                                  "volumes": [anonymous_volume("/project/node_modules")]}}}
    app = validate(model, None, tmp_path)
    assert app.services["web"].definition["volumes"] == []
    with raises_config("services.web.volumes[0]"):  # anywhere else it would hold data, lost on every release
        model["services"]["web"]["volumes"] = [anonymous_volume("/srv/files")]
        validate(model, None, tmp_path)


@pytest.mark.parametrize(("source", "said"), [("a[1].conf", "[ in it"), ("it's.conf", "' in it"),
                                              ("missing.conf", "does not exist")])
def test_a_bind_a_release_cannot_bake_is_refused(tmp_path: Path, source: str, said: str) -> None:
    if source != "missing.conf":
        (tmp_path / source).write_text("x\n")
    model = {"name": "shop", "services": {"web": {"image": "nginx:1", "ports": [port(80, "8080")],
                                                  "volumes": [bind(str(tmp_path / source), "/etc/x.conf", True)]}}}
    with raises_config("services.web.volumes[0]") as info:
        validate(model, None, tmp_path)
    assert said in info.value.message


def test_binds_settings_mark_data_and_raise_the_limit() -> None:
    settings = parse_settings({"binds": {"data": ["./uploads"], "limit": "1.5GB"}}, {"web"})
    assert settings.bind_data == ("./uploads",) and settings.bind_limit == int(1.5 * (1 << 30))
    assert parse_settings({}, {"web"}).bind_limit == 256 << 20
    for bad, key in (({"data": "/srv"}, "data"), ({"data": ["/abs"]}, "data"), ({"limit": "lots"}, "limit")):
        with pytest.raises(ConfigError) as info:
            parse_settings({"binds": bad}, {"web"})
        assert info.value.path == f"x-immutdock.binds.{key}"


# -- the identity of what is baked -------------------------------------------------------------
def test_the_bind_hash_is_the_same_for_the_same_files_and_new_for_any_change(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "other.txt").write_text("not bound\n")

    def digest() -> str:
        patterns = [ln for ln in (tmp_path / ".dockerignore").read_text().splitlines()] \
            if (tmp_path / ".dockerignore").exists() else []
        return hash_paths(tmp_path, ["html", "nginx/default.conf"], patterns).digest

    first = digest()
    assert digest() == first
    (tmp_path / "other.txt").write_text("changed, but not bound\n")
    os.utime(tmp_path / "html" / "index.html", (1, 1))  # times never count
    assert digest() == first
    seen = {first}
    for change in (lambda: (tmp_path / "html" / "index.html").write_text("<h1>v2</h1>\n"),
                   lambda: (tmp_path / "html" / "index.html").chmod(0o600),
                   lambda: (tmp_path / "html" / "new.css").write_text("body {}\n"),
                   lambda: (tmp_path / ".dockerignore").write_text("html/*.html\n"),
                   lambda: (tmp_path / "nginx" / "default.conf").write_text("server { listen 8001; }\n")):
        change()
        now = digest()
        assert now not in seen, change
        seen.add(now)


class _Engine:
    def __init__(self) -> None:
        self.images: dict[str, dict[str, Any]] = {}

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        return self.images.get(ref)


def _app(tmp_path: Path, *more: dict[str, Any], **block: Any):
    _project(tmp_path)
    model = {"name": "shop", "services": {"web": {
        "build": {"context": str(make_context(tmp_path, "web")), "dockerfile": "Dockerfile"}, "ports": [port(80, "8080")],
        "volumes": [bind(str(tmp_path / "nginx" / "default.conf"), "/etc/nginx/conf.d/default.conf", True),
                    bind(str(tmp_path / "html"), "/usr/share/nginx/html", True), *more]}}}
    return validate(model, block or None, tmp_path)


def _base(tag: str = "aaaaaaaaaaaa") -> ImagePlan:
    return ImagePlan(service="web", repository="shop-web", tag=tag, content_hash="sha256:" + tag * 5, cached=True,
                     image_id="sha256:1", spec=None)


def test_the_baked_image_is_tagged_by_its_base_and_its_files(tmp_path: Path) -> None:
    app = _app(tmp_path)
    svc, baking = app.services["web"], baking_of(app)
    first = plan_bake(svc, _base(), "shop-web", baking, _Engine())
    assert first.image.startswith("shop-web:") and first.tag != "aaaaaaaaaaaa" and not first.cached
    assert first.bake is not None and first.bake.base.image == "shop-web:aaaaaaaaaaaa"
    assert plan_bake(svc, _base(), "shop-web", baking, _Engine()).tag == first.tag
    assert plan_bake(svc, _base("bbbbbbbbbbbb"), "shop-web", baking, _Engine()).tag != first.tag
    (tmp_path / "nginx" / "default.conf").write_text("server { listen 8001; }\n")
    assert plan_bake(svc, _base(), "shop-web", baking, _Engine()).tag != first.tag
    pending = plan_bake(svc, _base("pending"), "shop-web", baking, _Engine())
    assert pending.tag == "pending" and pending.bake is not None


def test_a_bake_over_the_limit_or_left_out_by_dockerignore_is_refused(tmp_path: Path) -> None:
    app = _app(tmp_path, binds={"limit": 10})
    with pytest.raises(ConfigError) as info:
        hash_binds(app.services["web"], baking_of(app))
    assert "raise x-immutdock.binds.limit" in info.value.hint
    (tmp_path / ".dockerignore").write_text("nginx\n")
    app = _app(tmp_path)
    with pytest.raises(ConfigError) as info:
        hash_binds(app.services["web"], baking_of(app))
    assert "left out by the project's .dockerignore" in info.value.message and "!nginx/default.conf" in info.value.hint


def test_git_dotenv_secret_files_and_env_files_are_never_baked(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DB_PASSWORD=hunter2\n")
    (tmp_path / "token.txt").write_text("s3cr3t\n")
    app = _app(tmp_path)
    app = type(app)(**{**app.__dict__, "secrets": {"token": {"file": str(tmp_path / "token.txt")}}})
    baking = baking_of(app)
    assert {".git", ".env", "token.txt"} <= set(baking.private) and baking.private[-1] == "token.txt"
    whole = _app(tmp_path, bind(str(tmp_path), "/code", True))  # .:/code
    before = hash_binds(whole.services["web"], baking_of(whole))["/code"]
    (tmp_path / ".env").write_text("DB_PASSWORD=changed\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert hash_binds(whole.services["web"], baking_of(whole))["/code"] == before  # neither is in the image
    leaked = _app(tmp_path, bind(str(tmp_path / ".env"), "/app/.env", True))
    with pytest.raises(ConfigError) as info:
        hash_binds(leaked.services["web"], baking_of(leaked))
    assert "never bakes" in info.value.message and "secret" in info.value.hint


def test_a_folder_of_data_inside_a_baked_one_and_an_env_file_are_left_out_of_the_bake(tmp_path: Path) -> None:
    (tmp_path / "html" / "uploads").mkdir(parents=True)
    (tmp_path / "html" / "conf.env").write_text("API_TOKEN=abc\n")
    app = _app(tmp_path, bind(str(tmp_path / "html" / "uploads"), "/srv/uploads"), stateful=["web"])
    app = dataclasses.replace(app, env_files=(str(tmp_path / "html" / "conf.env"),))
    baking = baking_of(app)
    assert "html/uploads" in baking.patterns and "html/conf.env" in baking.private
    before = hash_binds(app.services["web"], baking)["/usr/share/nginx/html"]
    (tmp_path / "html" / "uploads" / "photo.jpg").write_bytes(b"a user's upload")
    (tmp_path / "html" / "conf.env").write_text("API_TOKEN=changed\n")
    assert hash_binds(app.services["web"], baking)["/usr/share/nginx/html"] == before


def test_a_folders_mode_is_part_of_the_bind_hash(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "html" / "sub").mkdir()
    before = hash_paths(tmp_path, ["html"], []).digest
    (tmp_path / "html" / "sub").chmod(0o700)
    assert hash_paths(tmp_path, ["html"], []).digest != before


def test_a_baked_image_on_the_engine_with_its_content_hash_is_cached(tmp_path: Path) -> None:
    app = _app(tmp_path)
    engine = _Engine()
    first = plan_bake(app.services["web"], _base(), "shop-web", baking_of(app), engine)
    engine.images[first.image] = {"Id": "sha256:baked", "Config": {"Labels": {"io.immutdock.content-hash": "other"}}}
    assert not plan_bake(app.services["web"], _base(), "shop-web", baking_of(app), engine).cached
    engine.images[first.image]["Config"]["Labels"]["io.immutdock.content-hash"] = first.content_hash
    again = plan_bake(app.services["web"], _base(), "shop-web", baking_of(app), engine)
    assert again.cached and again.image_id == "sha256:baked"


def test_the_bake_dockerfile_copies_each_bind_in_exec_form() -> None:
    text = dockerfile("shop-web:aaaaaaaaaaaa", (binds.Bake(".", "/code", True, True),
                                                binds.Bake("conf/my app.conf", "/etc/app.conf", False, False),
                                                binds.Bake("html", "/srv/html/", False, True)))
    assert text == ('FROM shop-web:aaaaaaaaaaaa\nCOPY [".", "/code/"]\n'
                    'COPY ["conf/my app.conf", "/etc/app.conf"]\nCOPY ["html/", "/srv/html/"]\n')


# -- records that say what was released --------------------------------------------------------
def test_a_checkout_with_uncommitted_changes_is_marked(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    assert git_revision(tmp_path) is None  # not a checkout
    git("init", "-q")
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    git("add", ".")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "one")
    clean = git_revision(tmp_path)
    assert clean and len(clean) == 40
    (tmp_path / "compose.yaml").write_text("services: {web: {}}\n")
    assert git_revision(tmp_path) == clean + UNCOMMITTED
    git("checkout", "compose.yaml")
    (tmp_path / "new.txt").write_text("x\n")  # a file not committed yet counts too
    assert git_revision(tmp_path) == clean + UNCOMMITTED


class _Images:
    """An engine's images: ref -> labels; removes what it is asked to."""

    def __init__(self, images: dict[str, dict[str, str]]) -> None:
        self.images = images

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        return {"Id": ref, "Config": {"Labels": self.images[ref]}} if ref in self.images else None

    def image_id(self, ref: str) -> str | None:
        return ref if ref in self.images else None

    def remove_image(self, ref: str) -> None:
        del self.images[ref]


def test_prune_takes_a_baked_images_own_image_along_unless_a_kept_one_is_made_from_it() -> None:
    import json

    from immutdock.apply.bake import BAKE_LABEL
    from immutdock.apply.prune import PrunePlan, apply_prune

    def baked(base: str) -> dict[str, str]:
        return {"io.immutdock.app": "a", BAKE_LABEL: json.dumps({"base": "sha256:x", "base_image": base})}

    own = {"io.immutdock.app": "a"}
    engine = _Images({"a-web:r1": baked("a-web:own1"), "a-web:own1": own, "a-web:r2": baked("a-web:own2"),
                      "a-web:own2": own, "a-web:r3": baked("a-web:own2")})
    removed = apply_prune({"n": engine}, "a", PrunePlan(keep=("r3",), remove=("a-web:r1", "a-web:r2"),  # type: ignore[dict-item]
                                                        kept=("a-web:r3",)))
    assert removed == ["a-web:r1", "a-web:r2"]
    assert sorted(engine.images) == ["a-web:own2", "a-web:r3"]  # own1 went with r1; r3 is made from own2
