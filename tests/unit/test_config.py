"""config: finding the compose file, reading its YAML, validating compose's normalized model."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

from .helpers import (APP, anonymous_volume, bind, full_block, full_model, make_context, minimal_model,
                      named_volume, port, raises_config, validate)
from immutdock.config import compose_file as config
from immutdock.config.validate import validate as validate_model
from immutdock.config import locate
from immutdock.config.model import BuildSecret
from immutdock.errors import ConfigError

ROUTER = {"router": {"service": "web", "port": 8000}}


# -- find_compose_file -----------------------------------------------------------------

@pytest.mark.parametrize("present, expected", [
    (["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"], "compose.yaml"),
    (["compose.yml", "docker-compose.yaml", "docker-compose.yml"], "compose.yml"),
    (["docker-compose.yaml", "docker-compose.yml"], "docker-compose.yaml"),
    (["docker-compose.yml"], "docker-compose.yml"),
    (["docker-compose.yml", "compose.yml"], "compose.yml"),
])
def test_find_compose_file_order(tmp_path: Path, present: list[str], expected: str) -> None:
    for name in present:
        (tmp_path / name).write_text("services: {}\n")
    found = locate.find_compose_file(tmp_path)
    assert found == tmp_path / expected
    assert found.is_absolute()


def test_find_compose_file_skips_a_directory_with_the_name(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").mkdir()
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    assert locate.find_compose_file(tmp_path) == tmp_path / "docker-compose.yml"


def test_find_compose_file_missing(tmp_path: Path) -> None:
    with raises_config(str(tmp_path)) as info:
        locate.find_compose_file(tmp_path)
    assert "no compose file" in info.value.message
    for name in locate.COMPOSE_FILE_NAMES:
        assert name in info.value.hint


def test_find_compose_file_explicit_relative_wins_over_defaults(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "prod.yaml").write_text("services: {}\n")
    found = locate.find_compose_file(tmp_path, Path("deploy/prod.yaml"))
    assert found == tmp_path / "deploy" / "prod.yaml"
    assert found.is_absolute()


def test_find_compose_file_explicit_absolute(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.yml"
    other.write_text("services: {}\n")
    assert locate.find_compose_file(tmp_path / "sub", other) == other


@pytest.mark.parametrize("explicit", ["nope.yaml", "deploy"])
def test_find_compose_file_explicit_missing_or_a_directory(tmp_path: Path, explicit: str) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "compose.yaml").write_text("services: {}\n")  # never a fallback for a bad -f
    with raises_config(explicit) as info:
        locate.find_compose_file(tmp_path, Path(explicit))
    assert "-f" in info.value.hint


# -- read_yaml -------------------------------------------------------------------------

@pytest.mark.parametrize("text, lines", [
    ("services:\n  web:\n    image: a: b\n", ["line 3"]),
    ("services:\n\tweb: {}\n", ["line 2"]),
    ("name: x\nservices:\n  web:\n    image: x\n   build: .\n", ["line 5"]),
    # unterminated: PyYAML's problem mark is the end of the file (line 4); the quote opens on line 3
    ("services:\n  web:\n    image: \"unterminated\n", ["line 3", "line 4"]),
    ("services:\n  web: [a,\n", ["line 2", "line 3"]),
])
def test_read_yaml_malformed_names_the_line(tmp_path: Path, text: str, lines: list[str]) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(text)
    with raises_config("compose.yaml") as info:
        config.read_yaml(path)
    assert any(line in str(info.value) for line in lines), str(info.value)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_read_yaml_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(text)
    with raises_config("compose.yaml") as info:
        config.read_yaml(path)
    assert "mapping" in info.value.message


def test_read_yaml_undecodable(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_bytes(b"services:\n  web:\n    image: \xff\xfe\n")
    with raises_config("compose.yaml") as info:
        config.read_yaml(path)
    assert "cannot read" in info.value.message


def test_read_yaml_ok(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  web:\n    image: nginx\nx-immutdock:\n  keep: 3\n")
    assert config.read_yaml(path) == {"services": {"web": {"image": "nginx"}}, "x-immutdock": {"keep": 3}}


# -- validate: the happy path ------------------------------------------------------------

def test_validate_full_app(tmp_path: Path) -> None:
    app = validate(full_model(tmp_path), full_block(), tmp_path)
    assert app.name == APP
    assert app.compose_file == tmp_path / "compose.yaml"
    assert app.project_dir == tmp_path
    assert [s.name for s in app.swapped] == ["web", "worker", "cache"]
    assert [s.name for s in app.stateful] == ["db"]
    web = app.services["web"]
    assert web.build is not None and web.image is None and not web.stateful
    assert web.build.context == (tmp_path / "web").resolve()
    assert web.build.dockerfile == (tmp_path / "web" / "Dockerfile").resolve()
    assert dict(web.build.args) == {"VERSION": "1.2"}  # an arg without a value is left to the environment
    assert web.build.target is None
    assert app.services["cache"].build is None and app.services["cache"].image == "varnish:7"
    assert app.services["db"].stateful
    router = app.settings.router
    assert router is not None
    assert (router.service, router.main.port, router.main.publish_ip, router.main.publish_port) == ("web", 8000, "127.0.0.1", 8080)
    assert (router.main.health.path, router.main.health.timeout) == ("/healthz", 30.0)
    assert app.settings.stateful == ("db",)
    assert app.settings.keep == 3
    assert app.settings.test is None
    assert app.volume_name("pg") == f"{APP}_pg"


def test_validate_freezes_definitions(tmp_path: Path) -> None:
    app = validate(full_model(tmp_path), full_block(), tmp_path)
    with pytest.raises(TypeError):
        app.services["web"].definition["image"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        app.services["x"] = app.services["web"]  # type: ignore[index]


def test_validate_defaults_without_block(tmp_path: Path) -> None:
    app = validate(minimal_model(tmp_path), None, tmp_path)
    assert app.settings.router is None
    assert app.settings.stateful == ()
    assert app.settings.keep == 5


def test_validate_defaults_of_router(tmp_path: Path) -> None:
    app = validate(minimal_model(tmp_path), ROUTER, tmp_path)
    router = app.settings.router
    assert router is not None
    assert router.publish == "127.0.0.1:8080"
    assert router.url == "http://127.0.0.1:8080"
    assert (router.main.health.path, router.main.health.timeout) == ("/", 60.0)
    assert router.image is None


def test_validate_build_args_are_strings(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    model["services"]["web"]["build"]["args"] = {"VERSION": 3, "KEYBOARD_LAYOUT": "de", "EMPTY": ""}
    app = validate(model, None, tmp_path)
    assert dict(app.services["web"].build.args) == {"VERSION": "3", "KEYBOARD_LAYOUT": "de", "EMPTY": ""}


def test_validate_custom_dockerfile_and_target(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    (tmp_path / "web" / "docker").mkdir()
    (tmp_path / "web" / "docker" / "Prod.Dockerfile").write_text("FROM busybox:1.36\n")
    model["services"]["web"]["build"].update(dockerfile="docker/Prod.Dockerfile", target="runtime")
    spec = validate(model, None, tmp_path).services["web"].build
    assert spec.dockerfile == (tmp_path / "web" / "docker" / "Prod.Dockerfile").resolve()
    assert spec.target == "runtime"


def test_validate_build_secrets(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    model["services"]["web"]["build"]["secrets"] = [{"source": "npm"}, {"source": "gh", "target": "github"}]
    model["secrets"] = {"npm": {"name": "shop_npm", "file": "/run/npmrc"}, "gh": {"name": "shop_gh", "environment": "GH_TOKEN"}}
    spec = validate(model, None, tmp_path).services["web"].build
    assert spec.secrets == (BuildSecret(id="npm", source="src=/run/npmrc"), BuildSecret(id="github", source="env=GH_TOKEN"))


def test_validate_additional_contexts(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    (tmp_path / "shared").mkdir()
    model["services"]["web"]["build"]["additional_contexts"] = {"shared": str(tmp_path / "shared"),
                                                                "base": "docker-image://alpine:3"}
    spec = validate(model, None, tmp_path).services["web"].build
    assert dict(spec.additional_contexts) == {"shared": str((tmp_path / "shared").resolve()),
                                              "base": "docker-image://alpine:3"}


# -- validate: services ------------------------------------------------------------------

def test_no_services(tmp_path: Path) -> None:
    with raises_config("services"):
        validate_model({"name": APP, "services": {}}, None, tmp_path / "compose.yaml")


def test_service_without_build_or_image(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    model["services"]["bare"] = {"command": ["true"]}
    with raises_config("services.bare"):
        validate(model, None, tmp_path)


def test_container_name_of_a_swapped_service_is_left_out_with_a_warning(tmp_path: Path) -> None:
    app = validate(minimal_model(tmp_path, container_name="shop-web"), ROUTER, tmp_path)
    assert "container_name" not in app.services["web"].definition
    assert app.warnings == ("services.web.container_name 'shop-web' is left out: two colors of web run during a "
                            "release (other services reach it by its service name 'web')",)


def test_container_name_another_service_refers_to_is_refused(tmp_path: Path) -> None:
    model = minimal_model(tmp_path, container_name="shop-web")
    model["services"]["worker"] = {"image": "busybox", "environment": {"API": "http://shop-web:8000/v1"}}
    with raises_config("services.web.container_name") as info:
        validate(model, ROUTER, tmp_path)
    assert "worker refers to 'shop-web'" in info.value.message and "'web'" in info.value.hint
    assert "stateful" not in info.value.hint  # the routed service cannot be stateful
    model["services"]["web"]["container_name"] = "web"  # its own service name: nothing breaks
    assert "container_name" not in validate(model, ROUTER, tmp_path).services["web"].definition


def test_container_name_allowed_on_a_stateful_service(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    model["services"]["db"] = {"image": "postgres:16", "container_name": "shop-db"}
    app = validate(model, {"stateful": ["db"]}, tmp_path)
    assert app.services["db"].definition["container_name"] == "shop-db"


def test_ports_of_the_routed_service_go_to_the_router(tmp_path: Path) -> None:
    app = validate(minimal_model(tmp_path, ports=[port(8000, "8000")]), ROUTER, tmp_path)
    assert "ports" not in app.services["web"].definition


def test_ports_refused_on_a_swapped_service_beside_a_routed_one(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    model["services"]["admin"] = {"image": "busybox", "ports": [port(9000, "9000")]}
    with raises_config("services.admin.ports") as info:
        validate(model, ROUTER, tmp_path)
    assert "publish" in info.value.hint


def test_ports_allowed_on_a_stateful_service(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    model["services"]["db"] = {"image": "postgres:16", "ports": [port(5432, "5432")]}
    validate(model, {"stateful": ["db"]}, tmp_path)


def test_writable_bind_refused_on_a_swapped_service(tmp_path: Path) -> None:
    volumes = [bind("/srv/conf", "/conf", read_only=True), bind("/srv/data", "/data")]
    with raises_config("services.web.volumes[1]") as info:
        validate(minimal_model(tmp_path, volumes=volumes), ROUTER, tmp_path)
    assert "/srv/data:/data holds data" in info.value.message and "two colors" in info.value.message
    assert "named volume" in info.value.hint and ":ro" in info.value.hint and "stateful" not in info.value.hint
    with raises_config("services.web.volumes[1]") as info:  # a swapped service may be listed as stateful
        validate(minimal_model(tmp_path, volumes=volumes), {"swapped": ["web"]}, tmp_path)
    assert "list web as stateful" in info.value.hint


def test_anonymous_volume_refused_on_a_swapped_service(tmp_path: Path) -> None:
    volumes = [named_volume("cache", "/cache"), anonymous_volume("/tmp/scratch")]
    with raises_config("services.web.volumes[1]") as info:
        validate(minimal_model(tmp_path, volumes=volumes), {"swapped": ["web"]}, tmp_path)
    assert "/tmp/scratch" in info.value.message


def test_read_only_bind_and_named_volume_allowed_on_a_swapped_service(tmp_path: Path) -> None:
    volumes = [bind("/srv/conf", "/conf", read_only=True), named_volume("cache", "/cache"),
               {"type": "tmpfs", "target": "/run"}]
    validate(minimal_model(tmp_path, volumes=volumes), None, tmp_path)


def test_writable_bind_and_anonymous_volume_allowed_on_a_stateful_service(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    model["services"]["db"] = {"image": "postgres:16",
                               "volumes": [bind("/srv/pg", "/var/lib/postgresql/data"), anonymous_volume("/var/tmp")]}
    validate(model, {"stateful": ["db"]}, tmp_path)


def test_router_service_must_join_networks(tmp_path: Path) -> None:
    with raises_config("services.web.network_mode"):
        validate(minimal_model(tmp_path, network_mode="host"), ROUTER, tmp_path)


# -- validate: builds ----------------------------------------------------------------------

def test_missing_build_context(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    shutil.rmtree(tmp_path / "web")
    with raises_config("services.web.build.context") as info:
        validate(model, None, tmp_path)
    assert str(tmp_path / "web") in info.value.message


def test_missing_dockerfile(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    (tmp_path / "web" / "Dockerfile").unlink()
    with raises_config("services.web.build.dockerfile") as info:
        validate(model, None, tmp_path)
    assert "Dockerfile" in info.value.message


def test_dockerfile_named_but_missing(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    model["services"]["web"]["build"]["dockerfile"] = "Prod.Dockerfile"
    with raises_config("services.web.build.dockerfile"):
        validate(model, None, tmp_path)


def test_dockerfile_inline_refused(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    model["services"]["web"]["build"]["dockerfile_inline"] = "FROM alpine\n"
    with raises_config("services.web.build.dockerfile_inline"):
        validate(model, None, tmp_path)


@pytest.mark.parametrize("context", ["https://github.com/acme/shop.git#main", "git@github.com:acme/shop.git"])
def test_remote_build_context_refused(tmp_path: Path, context: str) -> None:
    model = minimal_model(tmp_path)
    model["services"]["web"]["build"]["context"] = context
    with raises_config("services.web.build.context"):
        validate(model, None, tmp_path)


def test_missing_additional_context(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    model["services"]["web"]["build"]["additional_contexts"] = {"shared": str(tmp_path / "nope")}
    with raises_config("services.web.build.additional_contexts.shared"):
        validate(model, None, tmp_path)


def test_build_secret_not_declared(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    model["services"]["web"]["build"]["secrets"] = [{"source": "npm"}]
    with raises_config("services.web.build.secrets[0]"):
        validate(model, None, tmp_path)


def test_build_secret_without_file_or_environment(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    model["services"]["web"]["build"]["secrets"] = [{"source": "npm"}]
    model["secrets"] = {"npm": {"name": "shop_npm", "external": True}}
    with raises_config("secrets.npm"):
        validate(model, None, tmp_path)


@pytest.mark.parametrize("arg", ["DB_PASSWORD", "API_TOKEN", "SECRET_KEY", "aws_secret", "NPM_TOKEN", "dbPassword",
                                 "apiKey", "githubToken", "SSH_PRIVATE_KEY", "AWS_SECRET_ACCESS_KEY", "GH_AUTH"])
def test_secret_looking_build_arg_refused(tmp_path: Path, arg: str) -> None:
    model = minimal_model(tmp_path)
    model["services"]["web"]["build"]["args"] = {"VERSION": "1", arg: "hunter2"}
    with raises_config(f"services.web.build.args.{arg}") as info:
        validate(model, None, tmp_path)
    assert "build.secrets" in info.value.hint


def test_secret_looking_build_arg_refused_even_without_value(tmp_path: Path) -> None:
    model = minimal_model(tmp_path)
    model["services"]["web"]["build"]["args"] = {"DB_PASSWORD": None}
    with raises_config("services.web.build.args.DB_PASSWORD"):
        validate(model, None, tmp_path)


@pytest.mark.parametrize("arg", ["VERSION", "KEYBOARD_LAYOUT", "NODE_ENV", "PYTHON_VERSION", "TOKENIZER_MODEL",
                                 "MONKEY_PATCH", "BYPASS_CACHE", "PASSPORT_VERSION", "DATABASE_HOST", "BUILD_DATE"])
def test_ordinary_build_args_pass(tmp_path: Path, arg: str) -> None:
    assert not config.looks_secret(arg)
    model = minimal_model(tmp_path)
    model["services"]["web"]["build"]["args"] = {arg: "x"}
    assert dict(validate(model, None, tmp_path).services["web"].build.args) == {arg: "x"}


@pytest.mark.parametrize("arg", ["secretKey", "privateKey", "awsSecretAccessKey"])
def test_camel_case_secret_keys_are_refused(arg: str) -> None:
    assert config.looks_secret(arg)


@pytest.mark.parametrize("arg", ["APITOKEN", "AUTHTOKEN", "GHTOKEN", "DBPASSWORD", "CLIENTSECRET", "AWS_ACCESSKEY",
                                 "DB_PASS", "DB_PWD", "SMTP_PW", "GH_PAT", "JWT", "JWT_SIGNING", "BEARER",
                                 "bearerToken", "npmAuthToken", "Apikey", "SSH_PRIVATEKEY"])
def test_joined_and_short_secret_names_are_refused(arg: str) -> None:
    assert config.looks_secret(arg), arg


@pytest.mark.parametrize("arg", ["PWD", "PASS", "JWT_ALGORITHM", "JWT_ISSUER", "BEARER_HEADER", "APITOKEN_FILE",
                                 "DB_PASS_FILE", "PATCH_LEVEL", "PATTERN", "COMPASS_VERSION", "TOKENIZER_MODEL",
                                 "PASSWORDLESS_LOGIN", "PWA_ENABLED", "JWTLIB_VERSION"])
def test_names_near_secret_forms_pass(arg: str) -> None:
    assert not config.looks_secret(arg), arg


# -- validate: the x-immutdock block ----------------------------------------------------

@pytest.mark.parametrize("block, path", [
    ({"routers": {}}, "x-immutdock.routers"),
    ({"router": {"service": "web", "port": 8000, "host": "x"}}, "x-immutdock.router.host"),
    ({"router": {"service": "web", "port": 8000, "health": {"path": "/", "interval": 5}}},
     "x-immutdock.router.health.interval"),
    ({"test": {"service": "web", "command": "true", "image": "x"}}, "x-immutdock.test.image"),
])
def test_unknown_keys(tmp_path: Path, block: dict, path: str) -> None:
    with raises_config(path) as info:
        validate(minimal_model(tmp_path), block, tmp_path)
    assert "unknown key" in info.value.message
    assert "known keys here" in info.value.hint


@pytest.mark.parametrize("block, path", [
    ("yes", "x-immutdock"),
    (["router"], "x-immutdock"),
    ({"router": "web"}, "x-immutdock.router"),
    ({"router": {"service": "web", "port": 8000, "health": "/healthz"}}, "x-immutdock.router.health"),
    ({"test": "pytest"}, "x-immutdock.test"),
])
def test_blocks_must_be_mappings(tmp_path: Path, block: object, path: str) -> None:
    with raises_config(path):
        validate(minimal_model(tmp_path), block, tmp_path)


def test_router_service_not_a_service(tmp_path: Path) -> None:
    with raises_config("x-immutdock.router.service") as info:
        validate(minimal_model(tmp_path), {"router": {"service": "api", "port": 8000}}, tmp_path)
    assert "'api'" in info.value.message
    assert "web" in info.value.hint


def test_router_service_missing(tmp_path: Path) -> None:
    with raises_config("x-immutdock.router.service"):
        validate(minimal_model(tmp_path), {"router": {"port": 8000}}, tmp_path)


def test_router_port_missing(tmp_path: Path) -> None:
    with raises_config("x-immutdock.router.port"):
        validate(minimal_model(tmp_path), {"router": {"service": "web"}}, tmp_path)


def test_router_service_of_wrong_type(tmp_path: Path) -> None:
    with raises_config("x-immutdock.router.service"):
        validate(minimal_model(tmp_path), {"router": {"service": ["web"], "port": 8000}}, tmp_path)


@pytest.mark.parametrize("value", [0, 70000, 65536, -1, "abc", "", "80 ", True, False, 80.5, None, [8000]])
def test_router_port_out_of_range_or_not_a_number(tmp_path: Path, value: object) -> None:
    with raises_config("x-immutdock.router.port") as info:
        validate(minimal_model(tmp_path), {"router": {"service": "web", "port": value}}, tmp_path)
    assert "1 to 65535" in info.value.hint


@pytest.mark.parametrize("value, expected", [(1, 1), (65535, 65535), ("8000", 8000)])
def test_router_port_ok(tmp_path: Path, value: object, expected: int) -> None:
    app = validate(minimal_model(tmp_path), {"router": {"service": "web", "port": value}}, tmp_path)
    assert app.settings.router.main.port == expected


def test_router_port_superscript_digit(tmp_path: Path) -> None:
    with raises_config("x-immutdock.router.port"):
        validate(minimal_model(tmp_path), {"router": {"service": "web", "port": "²"}}, tmp_path)


@pytest.mark.parametrize("value, ip, pport, publish", [
    ("8080", "", 8080, "8080"),
    (9000, "", 9000, "9000"),
    ("0.0.0.0:80", "0.0.0.0", 80, "0.0.0.0:80"),
    ("10.1.2.3:8443", "10.1.2.3", 8443, "10.1.2.3:8443"),
    ("[::1]:8080", "::1", 8080, None),  # see test_render: the rendered IPv6 publish
])
def test_publish_ok(tmp_path: Path, value: object, ip: str, pport: int, publish: str | None) -> None:
    block = {"router": {"service": "web", "port": 8000, "publish": value}}
    router = validate(minimal_model(tmp_path), block, tmp_path).settings.router
    assert (router.main.publish_ip, router.main.publish_port) == (ip, pport)
    if publish is not None:
        assert router.publish == publish


@pytest.mark.parametrize("value", ["localhost:8080", "abc", "127.0.0.1:0", "1.2.3.4:70000", "127.0.0.1:",
                                   ":8080", "300.1.1.1:80", "127.0.0.1:http", True, None, "0"])
def test_bad_publish(tmp_path: Path, value: object) -> None:
    block = {"router": {"service": "web", "port": 8000, "publish": value}}
    with raises_config("x-immutdock.router.publish"):
        validate(minimal_model(tmp_path), block, tmp_path)


def test_router_url_for_all_interfaces(tmp_path: Path) -> None:
    block = {"router": {"service": "web", "port": 8000, "publish": "0.0.0.0:9000"}}
    assert validate(minimal_model(tmp_path), block, tmp_path).settings.router.url == "http://127.0.0.1:9000"


@pytest.mark.parametrize("value", ["", "  ", 5, ["haproxy"]])
def test_bad_router_image(tmp_path: Path, value: object) -> None:
    with raises_config("x-immutdock.router.image"):
        validate(minimal_model(tmp_path), {"router": {"service": "web", "port": 8000, "image": value}}, tmp_path)


def test_router_image(tmp_path: Path) -> None:
    block = {"router": {"service": "web", "port": 8000, "image": "registry.local/router:1"}}
    assert validate(minimal_model(tmp_path), block, tmp_path).settings.router.image == "registry.local/router:1"


@pytest.mark.parametrize("value", [0, -1, -0.5, "30", True, None])
def test_health_timeout_must_be_positive(tmp_path: Path, value: object) -> None:
    block = {"router": {"service": "web", "port": 8000, "health": {"timeout": value}}}
    with raises_config("x-immutdock.router.health.timeout"):
        validate(minimal_model(tmp_path), block, tmp_path)


@pytest.mark.parametrize("value", ["healthz", "", "http://x/healthz", 5, None])
def test_health_path_must_start_with_slash(tmp_path: Path, value: object) -> None:
    block = {"router": {"service": "web", "port": 8000, "health": {"path": value}}}
    with raises_config("x-immutdock.router.health.path"):
        validate(minimal_model(tmp_path), block, tmp_path)


def test_health_ok(tmp_path: Path) -> None:
    block = {"router": {"service": "web", "port": 8000, "health": {"path": "/ready?full=1", "timeout": 2.5}}}
    health = validate(minimal_model(tmp_path), block, tmp_path).settings.router.main.health
    assert (health.path, health.timeout) == ("/ready?full=1", 2.5)


@pytest.mark.parametrize("keep", [1, 0, -3, True, "5", 2.5, None])
def test_keep_at_least_two(tmp_path: Path, keep: object) -> None:
    with raises_config("x-immutdock.keep"):
        validate(minimal_model(tmp_path), {"keep": keep}, tmp_path)


def test_keep_two(tmp_path: Path) -> None:
    assert validate(minimal_model(tmp_path), {"keep": 2}, tmp_path).settings.keep == 2


def _with_db(tmp_path: Path) -> dict:
    model = minimal_model(tmp_path)
    model["services"]["db"] = {"image": "postgres:16"}
    return model


def test_stateful_not_a_service(tmp_path: Path) -> None:
    with raises_config("x-immutdock.stateful[1]") as info:
        validate(_with_db(tmp_path), {"stateful": ["db", "redis"]}, tmp_path)
    assert "'redis'" in info.value.message


@pytest.mark.parametrize("value", ["db", {"db": True}, ["db", 3]])
def test_stateful_must_be_a_list_of_names(tmp_path: Path, value: object) -> None:
    with raises_config("x-immutdock.stateful"):
        validate(_with_db(tmp_path), {"stateful": value}, tmp_path)


def test_stateful_duplicates_collapse(tmp_path: Path) -> None:
    assert validate(_with_db(tmp_path), {"stateful": ["db", "db"]}, tmp_path).settings.stateful == ("db",)


def test_router_service_cannot_be_stateful(tmp_path: Path) -> None:
    block = {"router": {"service": "db", "port": 5432}, "stateful": ["db"]}
    with raises_config("x-immutdock.router.service") as info:
        validate(_with_db(tmp_path), block, tmp_path)
    assert "stateful" in info.value.message


def test_pre_release_test(tmp_path: Path) -> None:
    app = validate(minimal_model(tmp_path), {"test": {"service": "web", "command": "pytest -q"}}, tmp_path)
    assert app.settings.test.service == "web"
    assert app.settings.test.command == ("sh", "-c", "pytest -q")
    app = validate(minimal_model(tmp_path), {"test": {"service": "web", "command": ["pytest", "-x", 3]}}, tmp_path)
    assert app.settings.test.command == ("pytest", "-x", "3")


@pytest.mark.parametrize("block, path", [
    ({"service": "api", "command": "true"}, "x-immutdock.test.service"),
    ({"command": "true"}, "x-immutdock.test.service"),
    ({"service": "web"}, "x-immutdock.test.command"),
    ({"service": "web", "command": []}, "x-immutdock.test.command"),
    ({"service": "web", "command": {"a": 1}}, "x-immutdock.test.command"),
    ({"service": "web", "command": ["ok", None]}, "x-immutdock.test.command"),
])
def test_bad_pre_release_test(tmp_path: Path, block: dict, path: str) -> None:
    with raises_config(path):
        validate(minimal_model(tmp_path), {"test": block}, tmp_path)


def test_validate_does_not_mutate_its_input(tmp_path: Path) -> None:
    model = full_model(tmp_path)
    block = full_block()
    before = (copy.deepcopy(model), copy.deepcopy(block))
    validate_model(model, block, tmp_path / "compose.yaml")
    assert (model, block) == before


# -- load: the compose CLI's reading of a real file ---------------------------------------

def _compose_available() -> bool:
    try:
        from immutdock.gateways import compose
        compose._compose_argv()
        return True
    except ConfigError:
        return False


needs_compose = pytest.mark.skipif(not _compose_available(), reason="docker compose v2 is not installed")

LOAD_FILE = """\
name: shop
services:
  web:
    build:
      context: ./web
      args:
        VERSION: "1.2"
    depends_on: [db]
    volumes:
      - ./conf:/conf:ro
      - uploads:/uploads
  db:
    image: postgres:16
    container_name: shop-db
    ports: ["5432:5432"]
    volumes:
      - pg:/var/lib/postgresql/data
      - /var/tmp
volumes:
  pg: {}
  uploads: {}
x-immutdock:
  router:
    service: web
    port: ${WEB_PORT:-8000}
    publish: "127.0.0.1:18080"
    health: {path: /healthz, timeout: 30}
  stateful: [db]
  keep: 3
"""


def _write_app(root: Path, text: str = LOAD_FILE, name: str = "compose.yaml") -> Path:
    make_context(root, "web")
    (root / "conf").mkdir(exist_ok=True)
    path = root / name
    path.write_text(text)
    return path


@needs_compose
def test_load_a_real_file(tmp_path: Path) -> None:
    _write_app(tmp_path)
    app = config.load(tmp_path)
    assert app.name == "shop"
    assert app.compose_file == tmp_path / "compose.yaml"
    assert [s.name for s in app.swapped] == ["web"] and [s.name for s in app.stateful] == ["db"]
    web = app.services["web"]
    assert web.build.context == (tmp_path / "web").resolve()
    assert dict(web.build.args) == {"VERSION": "1.2"}
    assert dict(web.definition["depends_on"])["db"]["condition"] == "service_started"
    router = app.settings.router
    assert (router.service, router.main.port, router.publish, router.main.health.path) == ("web", 8000, "127.0.0.1:18080", "/healthz")
    assert app.settings.keep == 3
    assert app.volume_name("pg") == "shop_pg"


@needs_compose
def test_load_interpolates_the_block_from_dotenv(tmp_path: Path) -> None:
    _write_app(tmp_path)
    (tmp_path / ".env").write_text("WEB_PORT=8123\n")
    assert config.load(tmp_path).settings.router.main.port == 8123


@needs_compose
def test_load_explicit_file(tmp_path: Path) -> None:
    _write_app(tmp_path, name="prod.yml")
    assert config.load(tmp_path, Path("prod.yml")).compose_file == tmp_path / "prod.yml"


@needs_compose
def test_load_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    _write_app(tmp_path, LOAD_FILE.replace("    depends_on: [db]", "    depends_on: [db\n  oops: 1"))
    with raises_config("compose.yaml") as info:
        config.load(tmp_path)
    assert "line " in info.value.message


@needs_compose
def test_load_short_syntax_writable_bind_refused(tmp_path: Path) -> None:
    _write_app(tmp_path, LOAD_FILE.replace("./conf:/conf:ro", "./conf:/conf"))
    with raises_config("services.web.volumes[0]"):
        config.load(tmp_path)


@needs_compose
def test_load_unknown_key_in_block(tmp_path: Path) -> None:
    _write_app(tmp_path, LOAD_FILE.replace("  keep: 3", "  keep: 3\n  colour: blue"))
    with raises_config("x-immutdock.colour"):
        config.load(tmp_path)


@needs_compose
def test_load_compose_refuses_the_file(tmp_path: Path) -> None:
    _write_app(tmp_path, LOAD_FILE.replace("    image: postgres:16", "    image: postgres:16\n    imagee: typo"))
    with raises_config("compose.yaml") as info:
        config.load(tmp_path)
    assert "compose" in info.value.hint


def test_a_file_without_a_block_releases_as_its_users_wrote_it(tmp_path: Path) -> None:
    model = minimal_model(tmp_path, container_name="shop-web", ports=[port(5000, "8000")])
    model["services"]["db"] = {"image": "postgres:16", "container_name": "shop-db", "ports": [port(5432, "5432")],
                               "volumes": [named_volume("pgdata", "/var/lib/postgresql/data")]}
    app = validate(model, None, tmp_path)
    router = app.settings.router
    assert (router.service, router.main.port, router.publish, router.main.health.statuses) == ("web", 5000, "8000", "200-499")
    assert app.settings.stateful == ("db",) and app.services["db"].stateful
    assert "ports" not in app.services["web"].definition and "container_name" not in app.services["web"].definition
    assert app.services["db"].definition["container_name"] == "shop-db"  # never doubled: it keeps both
    assert app.services["db"].definition["ports"]
    assert [(r.service, r.role) for r in app.roles] == [("web", "routed"), ("db", "stateful")]
    assert len(app.warnings) == 1 and "shop-web" in app.warnings[0]


def test_services_keep_the_order_the_files_give_them() -> None:
    from immutdock.config.compose_file import in_file_order

    raws = [{"services": {"web": {}, "api": {}}}, {"services": {"db": {}, "api": {}}}]
    services = {"api": 1, "db": 2, "included": 3, "web": 4}  # compose sorts by name
    assert list(in_file_order(raws, services)) == ["web", "api", "db", "included"]


def _dumps(volumes: Any) -> dict[str, Any]:
    return {**full_block(), "volumes": volumes}


def test_a_volume_dump_runs_in_the_stateful_service_that_mounts_it(tmp_path: Path) -> None:
    app = validate(full_model(tmp_path), _dumps({"pg": {"dump": "pg_dump -Fc -U $$USER shop",
                                                        "load": ["pg_restore", "-d", "shop"]}}), tmp_path)
    dump = app.settings.volumes["pg"]
    assert dump.service == "db"  # the only stateful service mounting pg
    assert dump.dump == ("sh", "-c", "pg_dump -Fc -U $USER shop")  # compose's $$ is a literal $
    assert dump.load == ("pg_restore", "-d", "shop")
    named = validate(full_model(tmp_path), _dumps({"pg": {"dump": "a", "load": "b", "service": "db"}}), tmp_path)
    assert named.settings.volumes["pg"].service == "db"


@pytest.mark.parametrize("volumes, path, words", [
    ({"pg": {"dump": "pg_dump"}}, "x-immutdock.volumes.pg.load", "missing"),
    ({"pg": {"load": "pg_restore"}}, "x-immutdock.volumes.pg.dump", "missing"),
    ({"pg": {"dump": "", "load": "x"}}, "x-immutdock.volumes.pg.dump", "command list or string"),
    ({"pg": {"dump": "a", "load": "b", "stop": True}}, "x-immutdock.volumes.pg.stop", "unknown key"),
    ({"nope": {"dump": "a", "load": "b"}}, "x-immutdock.volumes.nope", "not a named volume"),
    ({"uploads": {"dump": "a", "load": "b"}}, "x-immutdock.volumes.uploads.service", "0 stateful services"),
    ({"pg": {"dump": "a", "load": "b", "service": "web"}}, "x-immutdock.volumes.pg.service", "not a stateful"),
    ({"pg": {"dump": "a", "load": "b", "service": "ghost"}}, "x-immutdock.volumes.pg.service", "not a service"),
    (["pg"], "x-immutdock.volumes", "must be a mapping"),
])
def test_a_bad_volume_dump_is_refused_naming_the_key(tmp_path: Path, volumes: Any, path: str, words: str) -> None:
    with raises_config(path) as info:
        validate(full_model(tmp_path), _dumps(volumes), tmp_path)
    assert words in str(info.value)


def test_compose_files_come_from_f_then_compose_file_then_the_folder(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from immutdock.config.locate import compose_files

    for name in ("compose.yaml", "compose.override.yaml", "a.yaml", "b.yaml"):
        (tmp_path / name).write_text("services: {}\n")
    monkeypatch.delenv("COMPOSE_FILE", raising=False)
    assert compose_files(tmp_path) == [tmp_path / "compose.yaml", tmp_path / "compose.override.yaml"]
    monkeypatch.setenv("COMPOSE_FILE", "a.yaml:b.yaml")
    assert compose_files(tmp_path) == [tmp_path / "a.yaml", tmp_path / "b.yaml"]  # no override file added
    assert compose_files(tmp_path, Path("b.yaml")) == [tmp_path / "b.yaml"]  # -f wins
    monkeypatch.setenv("COMPOSE_PATH_SEPARATOR", ",")
    monkeypatch.setenv("COMPOSE_FILE", "b.yaml,a.yaml")
    assert compose_files(tmp_path) == [tmp_path / "b.yaml", tmp_path / "a.yaml"]
    monkeypatch.setenv("COMPOSE_FILE", "b.yaml,gone.yaml")
    with pytest.raises(ConfigError, match="COMPOSE_FILE: gone.yaml: no such compose file"):
        compose_files(tmp_path)
