"""render: the compose models of a color, the stateful services and the router."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from .helpers import APP, IMAGES, REDACTOR, full_app, full_block, full_model, minimal_model, validate
from immutdock import labels as L
from immutdock.plan import haproxy, render
from immutdock.plan.render import EDGE, OWN_NETWORK_PRIORITY

HASH = "sha256:cafe"


def test_names() -> None:
    assert render.other("blue") == "green" and render.other("green") == "blue"
    assert render.project_name("shop", "blue") == "shop-blue"
    assert render.edge_network("shop") == "shop_immutdock"
    assert haproxy.routed_alias("green", "Web_App.1") == "routed-green-web-app-1"


def test_color_project_has_only_swapped_services(tmp_path: Path) -> None:
    model = render.color_project(full_app(tmp_path), "blue", IMAGES, "r3", HASH)
    assert model["name"] == "shop-blue"
    assert list(model["services"]) == ["web", "worker", "cache"]


def test_color_project_pins_images_and_removes_build(tmp_path: Path) -> None:
    services = render.color_project(full_app(tmp_path), "blue", IMAGES, "r3", HASH)["services"]
    assert services["web"]["image"] == IMAGES["web"]
    assert services["worker"]["image"] == IMAGES["worker"]
    assert services["cache"]["image"] == "varnish:7"  # not built: the file's image
    for svc in services.values():
        assert "build" not in svc
    assert services["web"]["pull_policy"] == "never"  # built here, never pulled
    assert services["cache"]["pull_policy"] == "missing"


def test_color_project_keeps_a_users_pull_policy_for_pulled_images(tmp_path: Path) -> None:
    model = full_model(tmp_path)
    model["services"]["cache"]["pull_policy"] = "always"
    app = validate(model, full_block(), tmp_path)
    assert render.color_project(app, "blue", IMAGES, "r1", HASH)["services"]["cache"]["pull_policy"] == "always"


def test_color_project_drops_dependencies_on_stateful_services(tmp_path: Path) -> None:
    services = render.color_project(full_app(tmp_path), "blue", IMAGES, "r3", HASH)["services"]
    assert services["web"]["depends_on"] == {"worker": {"condition": "service_started", "required": True}}
    assert "depends_on" not in services["worker"]  # it only depended on db


def test_color_project_drops_extension_fields(tmp_path: Path) -> None:
    web = render.color_project(full_app(tmp_path), "blue", IMAGES, "r3", HASH)["services"]["web"]
    assert not any(k.startswith("x-") for k in web)
    assert web["environment"] == {"DB_HOST": "db"}  # the rest is passed through


def test_color_project_named_volumes_are_external(tmp_path: Path) -> None:
    model = render.color_project(full_app(tmp_path), "blue", IMAGES, "r3", HASH)
    # only the volumes the color uses, each the stable <app>_<volume>; never pg (stateful) nor unused
    assert model["volumes"] == {"uploads": {"external": True, "name": "shop_uploads"}}
    assert model["services"]["web"]["volumes"][0]["source"] == "uploads"


def test_volume_name_falls_back_to_app_and_key(tmp_path: Path) -> None:
    model = full_model(tmp_path)
    model["volumes"]["uploads"] = {}
    app = validate(model, full_block(), tmp_path)
    assert app.volume_name("uploads") == "shop_uploads"
    assert render.color_project(app, "blue", IMAGES, "r1", HASH)["volumes"]["uploads"]["name"] == "shop_uploads"


def test_volume_name_from_the_file_wins(tmp_path: Path) -> None:
    model = full_model(tmp_path)
    model["volumes"]["uploads"] = {"name": "legacy-uploads", "external": True}
    app = validate(model, full_block(), tmp_path)
    assert render.color_project(app, "blue", IMAGES, "r1", HASH)["volumes"] == {
        "uploads": {"external": True, "name": "legacy-uploads"}}


def test_color_project_without_named_volumes_has_no_volumes_key(tmp_path: Path) -> None:
    app = validate(minimal_model(tmp_path), None, tmp_path)
    assert "volumes" not in render.color_project(app, "blue", IMAGES, "r1", HASH)


@pytest.mark.parametrize("color", ["blue", "green"])
def test_edge_alias_only_on_the_routed_service(tmp_path: Path, color: str) -> None:
    services = render.color_project(full_app(tmp_path), color, IMAGES, "r3", HASH)["services"]
    assert services["web"]["networks"][EDGE] == {"aliases": [f"routed-{color}-web"]}
    assert services["worker"]["networks"][EDGE] is None
    assert services["cache"]["networks"][EDGE] is None


def test_no_alias_without_a_router(tmp_path: Path) -> None:
    block = full_block()
    del block["router"]
    services = render.color_project(full_app(tmp_path, block), "blue", IMAGES, "r3", HASH)["services"]
    assert all(svc["networks"][EDGE] is None for svc in services.values())


def test_own_networks_get_a_priority(tmp_path: Path) -> None:
    services = render.color_project(full_app(tmp_path), "blue", IMAGES, "r3", HASH)["services"]
    assert services["web"]["networks"] == {"back": {"priority": OWN_NETWORK_PRIORITY},
                                           "front": {"priority": OWN_NETWORK_PRIORITY},
                                           EDGE: {"aliases": ["routed-blue-web"]}}
    # a service on no network is on `default`, which also wins over the edge network
    assert services["cache"]["networks"] == {"default": {"priority": OWN_NETWORK_PRIORITY}, EDGE: None}


def test_own_network_settings_are_kept_next_to_the_priority(tmp_path: Path) -> None:
    model = full_model(tmp_path)
    model["services"]["worker"]["networks"]["back"] = {"aliases": ["jobs"], "ipv4_address": "10.5.0.9"}
    app = validate(model, full_block(), tmp_path)
    back = render.color_project(app, "blue", IMAGES, "r1", HASH)["services"]["worker"]["networks"]["back"]
    assert back == {"aliases": ["jobs"], "ipv4_address": "10.5.0.9", "priority": OWN_NETWORK_PRIORITY}


def test_network_mode_service_gets_no_networks(tmp_path: Path) -> None:
    model = full_model(tmp_path)
    model["services"]["cache"]["network_mode"] = "service:worker"
    app = validate(model, full_block(), tmp_path)
    assert "networks" not in render.color_project(app, "blue", IMAGES, "r1", HASH)["services"]["cache"]


def test_top_level_networks(tmp_path: Path) -> None:
    networks = render.color_project(full_app(tmp_path), "blue", IMAGES, "r3", HASH)["networks"]
    assert networks == {
        "back": {"ipam": {}},  # `name:` stripped: compose scopes it to shop-blue
        "front": {"ipam": {}},
        "shared": {"name": "shared-net", "external": True},  # external: kept as is
        EDGE: {"external": True, "name": "shop_immutdock"},
    }


def test_external_default_network_is_kept(tmp_path: Path) -> None:
    model = full_model(tmp_path)
    model["networks"]["default"] = {"name": "corp-net", "external": True}
    app = validate(model, full_block(), tmp_path)
    networks = render.color_project(app, "blue", IMAGES, "r1", HASH)["networks"]
    assert networks.get("default") == {"name": "corp-net", "external": True}


def test_labels(tmp_path: Path) -> None:
    services = render.color_project(full_app(tmp_path), "green", IMAGES, "r3", HASH)["services"]
    assert services["web"]["labels"] == {"team": "shop", L.APP: APP, L.ROLE: "color", L.COLOR: "green",
                                         L.RELEASE: "r3", L.CONFIG_HASH: HASH, L.SERVICE: "web"}
    for name, svc in services.items():
        assert svc["labels"][L.SERVICE] == name
        assert svc["labels"][L.RELEASE] == "r3"


def test_secrets_only_those_used(tmp_path: Path) -> None:
    model = full_model(tmp_path)
    model["secrets"]["other"] = {"name": "shop_other", "file": "/x"}
    app = validate(model, full_block(), tmp_path)
    color = render.color_project(app, "blue", IMAGES, "r1", HASH)
    assert color["secrets"] == {"api_key": {"name": "shop_api_key", "file": str(tmp_path / "api_key.txt")}}
    assert "secrets" not in render.state_project(app, IMAGES, REDACTOR)


def test_configs_used_by_a_project_are_carried_into_it(tmp_path: Path) -> None:
    """A config compose reads from a file, inline content or the environment stays defined in
    every project whose services use it (else compose refuses the project)."""
    model = full_model(tmp_path)
    model["configs"] = {"nginx": {"name": "shop_nginx", "file": str(tmp_path / "nginx.conf")},
                        "motd": {"name": "shop_motd", "content": "hello"}, "unused": {"environment": "X"}}
    model["services"]["web"]["configs"] = [{"source": "nginx", "target": "/etc/nginx/nginx.conf"}]
    model["services"]["db"]["configs"] = [{"source": "motd"}]
    app = validate(model, full_block(), tmp_path)
    assert render.color_project(app, "blue", IMAGES, "r1", HASH)["configs"] == {
        "nginx": {"name": "shop_nginx", "file": str(tmp_path / "nginx.conf")}}
    assert render.state_project(app, IMAGES, REDACTOR)["configs"] == {"motd": {"name": "shop_motd", "content": "hello"}}


def test_rendering_does_not_touch_the_app(tmp_path: Path) -> None:
    app = full_app(tmp_path)
    before = copy.deepcopy({k: dict(s.definition) for k, s in app.services.items()})
    model = render.color_project(app, "blue", IMAGES, "r1", HASH)
    model["services"]["web"]["networks"]["back"]["priority"] = 1
    model["services"]["web"]["labels"]["x"] = "y"
    render.state_project(app, IMAGES, REDACTOR)
    assert {k: dict(s.definition) for k, s in app.services.items()} == before


def test_rendered_model_is_json_and_yaml_safe(tmp_path: Path) -> None:
    import yaml

    model = render.color_project(full_app(tmp_path), "blue", IMAGES, "r1", HASH)
    assert yaml.safe_load(yaml.safe_dump(model)) == model
    json.dumps(model)


# -- the stateful project ----------------------------------------------------------------

def test_state_project(tmp_path: Path) -> None:
    model = render.state_project(full_app(tmp_path), IMAGES, REDACTOR)
    assert model["name"] == "shop-state"
    assert list(model["services"]) == ["db"]
    db = model["services"]["db"]
    assert db["image"] == "postgres:16"
    assert db["container_name"] == "shop-db"  # allowed: never doubled
    assert db["ports"][0]["published"] == "5432"
    digest = db["labels"].pop(L.CONFIG_HASH)
    assert db["labels"] == {L.APP: APP, L.ROLE: "state", L.SERVICE: "db"}
    assert digest.startswith("sha256:") and digest == render.digest(db), "the hash of the rest of the definition"
    assert db["networks"] == {EDGE: None}  # never doubled: the edge network is all it needs
    assert model["volumes"] == {"pg": {"external": True, "name": "shop_pg"}}  # the anonymous one stays anonymous
    assert model["networks"] == {EDGE: {"external": True, "name": "shop_immutdock"}}


def test_a_stateful_service_keeps_its_external_networks(tmp_path: Path) -> None:
    model = full_model(tmp_path)
    model["services"]["db"]["networks"] = {"back": None, "shared": None}
    model = render.state_project(validate(model, full_block(), tmp_path), IMAGES, REDACTOR)
    assert model["services"]["db"]["networks"] == {"shared": {"priority": OWN_NETWORK_PRIORITY}, EDGE: None}
    assert model["networks"] == {"shared": {"name": "shared-net", "external": True},
                                 EDGE: {"external": True, "name": "shop_immutdock"}}


def test_a_color_of_one_service_needs_no_network_of_its_own(tmp_path: Path) -> None:
    model = full_model(tmp_path)
    for name in ("worker", "cache"):
        del model["services"][name]
    model = render.color_project(validate(model, full_block(), tmp_path), "blue", IMAGES, "r1", HASH)
    assert model["services"]["web"]["networks"] == {EDGE: {"aliases": ["routed-blue-web"]}}
    assert model["networks"] == {EDGE: {"external": True, "name": "shop_immutdock"}}


def test_state_project_none_without_stateful_services(tmp_path: Path) -> None:
    assert render.state_project(validate(minimal_model(tmp_path), None, tmp_path), IMAGES, REDACTOR) is None


def test_state_project_keeps_dependencies_among_stateful_services(tmp_path: Path) -> None:
    model = full_model(tmp_path)
    model["services"]["db"]["depends_on"] = {"web": {"condition": "service_started", "required": True}}
    model["services"]["backup"] = {"image": "backup:1", "depends_on": {
        "db": {"condition": "service_healthy", "required": True}, "web": {"condition": "service_started"}}}
    block = full_block()
    block["stateful"] = ["db", "backup"]
    services = render.state_project(validate(model, block, tmp_path), IMAGES, REDACTOR)["services"]
    assert "depends_on" not in services["db"]
    assert services["backup"]["depends_on"] == {"db": {"condition": "service_healthy", "required": True}}


def test_built_stateful_service_uses_its_built_image(tmp_path: Path) -> None:
    block = full_block()
    block["stateful"] = ["db", "worker"]
    app = full_app(tmp_path, block)
    services = render.state_project(app, IMAGES, REDACTOR)["services"]
    assert services["worker"]["image"] == IMAGES["worker"]
    assert services["worker"]["pull_policy"] == "never"
    assert "build" not in services["worker"]


# -- the router project ------------------------------------------------------------------

def test_router_project(tmp_path: Path) -> None:
    model = render.router_project(full_app(tmp_path), "immutdock-router:abc", "green")
    assert model["name"] == "shop-router"
    svc = model["services"]["router"]
    assert svc["image"] == "immutdock-router:abc"
    config = svc["environment"].pop("IMMUTDOCK_HAPROXY_CFG")
    assert config == haproxy.haproxy_config(full_app(tmp_path)).replace("$", "$$")  # compose reads $ as its own
    assert svc["environment"] == {
        "IMMUTDOCK_BLUE_HEALTH_PATH": "/healthz", "IMMUTDOCK_BLUE_PORT": "8000", "IMMUTDOCK_BLUE_RISE": "2",
        "IMMUTDOCK_BLUE_HEALTH_STATUS": "200-299", "IMMUTDOCK_GREEN_HEALTH_STATUS": "200-299",
        "IMMUTDOCK_BLUE_TIMEOUT": "75", "IMMUTDOCK_GREEN_HEALTH_PATH": "/healthz", "IMMUTDOCK_GREEN_PORT": "8000",
        "IMMUTDOCK_GREEN_RISE": "2", "IMMUTDOCK_GREEN_TIMEOUT": "75", "IMMUTDOCK_CLIENT_TIMEOUT": "75",
        "IMMUTDOCK_HARD_STOP": "80", "IMMUTDOCK_LIVE": "green", "IMMUTDOCK_BLUE_SLOTS": "16",
        "IMMUTDOCK_GREEN_SLOTS": "16", "IMMUTDOCK_BLUE_INTER": "50ms", "IMMUTDOCK_GREEN_INTER": "50ms"}
    assert svc["ports"] == ["127.0.0.1:8080:8080"]
    assert svc["labels"] == {L.APP: APP, L.ROLE: "router"}
    assert svc["networks"] == {"edge": {}}
    assert model["networks"] == {"edge": {"external": True, "name": "shop_immutdock"}}


def test_each_color_has_its_own_backend_settings(tmp_path: Path) -> None:
    app = full_app(tmp_path)
    slow = {**render.backend_settings(app), "timeout": "300", "health_path": "/ready"}
    env = render.router_project(app, "img", "blue", {"blue": render.backend_settings(app), "green": slow})[
        "services"]["router"]["environment"]
    assert env["IMMUTDOCK_BLUE_HEALTH_PATH"] == "/healthz" and env["IMMUTDOCK_GREEN_HEALTH_PATH"] == "/ready"
    assert env["IMMUTDOCK_CLIENT_TIMEOUT"] == "300" and env["IMMUTDOCK_HARD_STOP"] == "305"  # the slower color's
    assert render.parse_router_env(env) == {"blue": render.backend_settings(app), "green": slow}
    assert render.backend_changes(render.backend_settings(app), slow) == \
        "health_path /healthz -> /ready, timeout 75 -> 300"


def test_a_color_model_records_its_router_settings(tmp_path: Path) -> None:
    app = full_app(tmp_path)
    model = render.color_project(app, "blue", IMAGES, "r1", HASH)
    assert model[render.ROUTER_SETTINGS] == {"port": "8000", "health_path": "/healthz", "rise": "2",
                                             "health_status": "200-299", "timeout": "75"}


@pytest.mark.parametrize("publish, ports", [
    ("9000", ["9000:8080"]), (9000, ["9000:8080"]), ("0.0.0.0:80", ["0.0.0.0:80:8080"]),
    ("10.0.0.5:8443", ["10.0.0.5:8443:8080"]),
])
def test_router_project_publish(tmp_path: Path, publish: object, ports: list[str]) -> None:
    block = full_block()
    block["router"]["publish"] = publish
    assert render.router_project(full_app(tmp_path, block), "img", "blue")["services"]["router"]["ports"] == ports


def test_router_project_ipv6_publish(tmp_path: Path) -> None:
    block = full_block()
    block["router"]["publish"] = "[::1]:8080"
    app = full_app(tmp_path, block)
    assert render.router_project(app, "img", "blue")["services"]["router"]["ports"] == ["[::1]:8080:8080"]
    assert app.settings.router.url == "http://[::1]:8080"


def test_router_project_does_not_change_the_template(tmp_path: Path) -> None:
    app = full_app(tmp_path)
    first = render.router_project(app, "img:1", "blue")
    first["services"]["router"]["labels"]["x"] = "y"
    assert render.router_project(app, "img:1", "blue") != first
    assert render.router_project(app, "img:1", "blue") == render.router_project(app, "img:1", "blue")


def test_router_identity_is_its_image_and_address_only(tmp_path: Path) -> None:
    app = full_app(tmp_path)
    identity = render.router_identity(app, "img:1")
    assert identity.startswith("sha256:") and len(identity) == len("sha256:") + 64
    assert identity == render.router_identity(app, "img:1")
    for model in (render.router_project(app, "img:1", "blue"), render.router_project(app, "img:1", "green")):
        svc = model["services"]["router"]  # the live color and the settings are left out, not the config
        svc["environment"] = {"IMMUTDOCK_HAPROXY_CFG": svc["environment"]["IMMUTDOCK_HAPROXY_CFG"]}
        digest = "sha256:" + hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()
        assert digest == identity


def test_router_identity_follows_what_the_router_is_made_from(tmp_path: Path) -> None:
    base = render.router_identity(full_app(tmp_path), "img:1")
    assert render.router_identity(full_app(tmp_path), "img:2") != base
    block = full_block()
    block["router"]["publish"] = "9999"
    assert render.router_identity(full_app(tmp_path, block), "img:1") != base
    for key, value in (("port", 9000), ("health", {"path": "/ready"}), ("request_timeout", 300)):
        block = full_block()
        block["router"][key] = value
        assert render.router_identity(full_app(tmp_path, block), "img:1") == base, f"{key} changes by a reload"


# -- with_color: a recorded release re-targeted ----------------------------------------------

def test_with_color_equals_rendering_the_other_color(tmp_path: Path) -> None:
    app = full_app(tmp_path)
    blue = render.color_project(app, "blue", IMAGES, "r3", HASH)
    recorded = json.loads(json.dumps(blue))  # what the ledger gives back
    moved = render.with_color(recorded, APP, "green", "r9")
    assert moved == render.color_project(app, "green", IMAGES, "r9", HASH)
    assert moved["name"] == "shop-green"
    assert moved["services"]["web"]["networks"][EDGE] == {"aliases": ["routed-green-web"]}
    assert moved["services"]["worker"]["networks"][EDGE] is None
    assert {svc["labels"][L.COLOR] for svc in moved["services"].values()} == {"green"}
    assert {svc["labels"][L.CONFIG_HASH] for svc in moved["services"].values()} == {HASH}


def test_with_color_does_not_change_its_input(tmp_path: Path) -> None:
    blue = render.color_project(full_app(tmp_path), "blue", IMAGES, "r3", HASH)
    before = copy.deepcopy(blue)
    render.with_color(blue, APP, "green", "r4")
    assert blue == before


def test_with_color_same_color_new_release(tmp_path: Path) -> None:
    app = full_app(tmp_path)
    blue = render.color_project(app, "blue", IMAGES, "r3", HASH)
    assert render.with_color(blue, APP, "blue", "r7") == render.color_project(app, "blue", IMAGES, "r7", HASH)


def test_stateful_changes(tmp_path: Path) -> None:
    app = full_app(tmp_path)
    current = render.state_project(app, IMAGES, REDACTOR)["services"]["db"]["labels"][L.CONFIG_HASH]
    assert render.stateful_changes(app, IMAGES, {"db": current}, REDACTOR) == ()
    assert render.stateful_changes(app, IMAGES, {}, REDACTOR) == ("db",), "not running"
    assert render.stateful_changes(app, IMAGES, {"db": None}, REDACTOR) == ("db",), "made before the label existed"
    assert render.stateful_changes(app, {**IMAGES, "db": "postgres:17"}, {"db": current}, REDACTOR) == ("db",)


def test_stateful_aliases_are_answered_on_the_edge_network(tmp_path: Path) -> None:
    from dataclasses import replace

    app = full_app(tmp_path)
    db = app.services["db"]
    nets = {"back": {"aliases": ["postgres", "database"]}, "default": {"aliases": ["pg"]}}
    app = replace(app, services={**app.services, "db": replace(db, definition={**db.definition, "networks": nets})})
    svc = render.state_project(app, IMAGES, REDACTOR)["services"]["db"]
    assert svc["networks"][EDGE] == {"aliases": ["database", "pg", "postgres"]}
    assert set(svc["networks"]) == {EDGE}


def test_the_live_colors_servers_are_checked_every_2s_and_the_others_every_50ms() -> None:
    backends = {c: {"port": "8000", "health_path": "/", "rise": "2", "health_status": "200-399", "timeout": "60"}
                for c in render.COLORS}
    env = render.router_env(backends, "green")
    assert (env["IMMUTDOCK_GREEN_INTER"], env["IMMUTDOCK_BLUE_INTER"]) == ("2s", "50ms")
    assert render.router_env(backends)["IMMUTDOCK_GREEN_INTER"] == "50ms"  # no color live yet: both gated
    assert render.parse_router_env(env) == backends  # the rate is the router's, never a setting of the file
