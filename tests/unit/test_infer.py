"""Role inference from a compose file as its users write it: one test per rule, in the order
the rules apply, plus the block the rest of immutdock then reads."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import bind, named_volume, port
from immutdock.config.infer import image_names, refers_to, resolve, stateful_evidence
from immutdock.config.settings import parse_settings
from immutdock.errors import ConfigError


def roles(services: dict[str, Any], block: dict[str, Any] | None = None) -> dict[str, tuple[str, str, bool]]:
    _, found = resolve(block or {}, services)
    return {r.service: (r.role, r.reason, r.inferred) for r in found}


def test_image_names_leave_out_registry_tag_and_digest() -> None:
    assert image_names("docker.io/bitnami/postgresql:16") == {"bitnami", "postgresql"}
    assert image_names("localhost:5000/mariadb@sha256:abc") == {"mariadb"}
    assert image_names("mcr.microsoft.com/mssql/server:2022-latest") == {"mssql", "server"}
    assert image_names("Postgres") == {"postgres"} and image_names(None) == set()


# -- 1. what the block says wins ----------------------------------------------------------------
def test_the_block_wins_over_every_inference() -> None:
    services = {"web": {"ports": [port(5000, "8000")]}, "db": {"image": "postgres:16"},
                "cache": {"image": "redis:7"}, "api": {"ports": [port(9000, "9000")]}}
    found = roles(services, {"router": {"service": "api", "port": 9000}, "stateful": ["web"], "swapped": ["cache"]})
    assert found["api"] == ("routed", "named by x-immutdock.router.service", False)
    assert found["web"] == ("stateful", "listed in x-immutdock.stateful", False)
    assert found["cache"] == ("swapped", "listed in x-immutdock.swapped", False)
    assert found["db"][:1] == ("stateful",) and found["db"][2]


def test_a_service_listed_both_stateful_and_swapped_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        resolve({"stateful": ["db"], "swapped": ["db"]}, {"db": {}})
    assert info.value.path == "x-immutdock.swapped" and "db" in info.value.message



# -- 1b. a service others wait for to complete is a job ----------------------------------------------
def test_a_service_others_wait_for_to_complete_is_a_job_even_with_a_volume() -> None:
    services = {"web": {"ports": [port(8000, "8000")], "depends_on": {
                    "migrate": {"condition": "service_completed_successfully"}, "db": {"condition": "service_healthy"}}},
                "migrate": {"volumes": [named_volume("static", "/static")]}, "db": {"image": "postgres:16"}}
    found = roles(services)
    assert found["migrate"][0] == "job" and found["migrate"][2]
    assert "web waits for it to complete" in found["migrate"][1] and "once per release" in found["migrate"][1]
    assert found["db"][0] == "stateful" and found["web"][0] == "routed"
    block, _ = resolve({}, services)
    assert "migrate" not in block["stateful"], "a job runs in the colors"


def test_started_and_healthy_conditions_make_no_job() -> None:
    services = {"web": {"depends_on": {"worker": {"condition": "service_started"}}}, "worker": {}}
    assert roles(services)["worker"][0] == "swapped"
    assert roles(services, {"stateful": ["worker"]})["worker"][0] == "stateful", "the block still wins"

# -- 2. stateful ----------------------------------------------------------------------------------
@pytest.mark.parametrize("image", ["postgres:16", "mariadb:10.6", "mysql:8", "mongo:7", "redis:7-alpine",
                                   "bitnami/postgresql:16", "rabbitmq:3-management", "docker.io/library/memcached"])
def test_a_well_known_database_image_is_stateful(image: str) -> None:
    role, reason, inferred = roles({"db": {"image": image}})["db"]
    assert (role, inferred) == ("stateful", True)
    assert f"image {image} is a well-known" in reason and "x-immutdock.swapped" in reason  # how to override


@pytest.mark.parametrize("image", ["nginx:1.25", "mongo-express:1", "adminer", "wordpress:6", "postgres-exporter"])
def test_tools_around_databases_are_not_databases(image: str) -> None:
    assert stateful_evidence({"image": image, "ports": [port(8080, "8080")]}) is None


def test_a_built_service_is_not_judged_by_its_image_name() -> None:
    assert stateful_evidence({"image": "redis:7", "build": {"context": "."}, "ports": [port(80, "80")]}) is None


@pytest.mark.parametrize("target", ["/var/lib/postgresql/data", "/var/lib/mysql", "/data/db", "/bitnami/mariadb"])
def test_a_writable_mount_at_a_data_path_is_stateful_even_when_it_publishes(target: str) -> None:
    svc = {"build": {"context": "."}, "volumes": [named_volume("data", target)], "ports": [port(8000, "8000")]}
    assert stateful_evidence(svc) == f"mounts named volume data at {target}, a database's data path"


def test_a_read_only_mount_at_a_data_path_is_no_evidence() -> None:
    svc = {"volumes": [bind("/srv/pg", "/var/lib/postgresql", read_only=True)], "ports": [port(8000, "8000")]}
    assert stateful_evidence(svc) is None


@pytest.mark.parametrize(("target", "name"), [(5432, "PostgreSQL"), (3306, "MySQL/MariaDB"), (6379, "Redis"),
                                              (27017, "MongoDB")])
def test_a_published_database_port_is_stateful(target: int, name: str) -> None:
    assert stateful_evidence({"image": "myorg/store", "ports": [port(target, str(target))]}) == \
        f"publishes {name}'s port {target}"


def test_a_writable_volume_with_nothing_published_is_stateful() -> None:
    assert stateful_evidence({"volumes": [named_volume("uploads", "/srv/uploads")]}) == \
        "mounts writable named volume uploads at /srv/uploads and publishes nothing"
    assert stateful_evidence({"volumes": [bind("/srv/x", "/x")]}) == \
        "mounts writable bind mount /srv/x at /x and publishes nothing"
    # the same volume on a service that publishes: it serves, so it is routed (both colors mount it)
    assert stateful_evidence({"volumes": [named_volume("uploads", "/srv/uploads")], "ports": [port(80, "80")]}) is None


# -- 3. routed ------------------------------------------------------------------------------------
def test_the_service_that_publishes_is_routed_and_the_router_takes_its_address() -> None:
    services = {"web": {"ports": [{**port(5000, "8000"), "host_ip": "127.0.0.1"}]}, "db": {"image": "postgres:16"}}
    block, found = resolve({}, services)
    assert block["router"] == {"service": "web", "port": 5000, "publish": "127.0.0.1:8000"}
    assert block["stateful"] == ["db"]
    web = next(r for r in found if r.service == "web")
    assert web.reason == ("publishes 127.0.0.1:8000:5000; the router listens on 127.0.0.1:8000 and sends to "
                          "container port 5000, and web publishes nothing itself")


def test_all_interfaces_stay_all_interfaces() -> None:
    block, _ = resolve({}, {"web": {"ports": [port(5000, "8000")]}})
    assert block["router"]["publish"] == "8000"


def test_a_partial_router_block_takes_the_rest_from_the_ports() -> None:
    services = {"web": {"ports": [port(5000, "80")]}}
    block, _ = resolve({"router": {"service": "web", "health": {"path": "/up"}}}, services)
    assert block["router"] == {"service": "web", "health": {"path": "/up"}, "port": 5000, "publish": "80"}
    block, _ = resolve({"router": {"service": "web", "port": 5001, "publish": "127.0.0.1:81"}}, services)
    assert block["router"] == {"service": "web", "port": 5001, "publish": "127.0.0.1:81"}  # explicit wins


@pytest.mark.parametrize(("ports", "said"), [
    ([{**port(53, "53"), "protocol": "udp"}], "53:53/udp is a UDP port"),
    ([{"target": 5000, "protocol": "tcp"}], "5000 is a port on a random host port"),
])
def test_a_routed_service_needs_one_fixed_tcp_port(ports: list[dict[str, Any]], said: str) -> None:
    with pytest.raises(ConfigError) as info:  # named as routed (inferred, a UDP port makes it stateful)
        resolve({"router": {"service": "web"}}, {"web": {"ports": ports}})
    assert info.value.path.startswith("services.web.ports") and said in info.value.message


def test_a_service_named_as_routed_with_two_ports_is_asked_which() -> None:
    with pytest.raises(ConfigError) as info:
        resolve({"router": {"service": "web"}}, {"web": {"ports": [port(5000, "8000"), port(5001, "8001")]}})
    assert info.value.path == "services.web.ports" and "publishes 2 ports (8000:5000, 8001:5001)" in info.value.message


def test_every_service_that_publishes_is_routed_each_port_a_route_in_file_order() -> None:
    block, found = resolve({"router": {"request_timeout": 30}}, {
        "frontend": {"ports": [{**port(80, "8080"), "host_ip": "127.0.0.1"}]},
        "api": {"ports": [port(8000, "8000"), port(9100, "9100")]},
        "worker": {}})
    assert block["router"] == {"request_timeout": 30, "routes": [
        {"service": "frontend", "port": 80, "publish": "127.0.0.1:8080"},
        {"service": "api", "port": 8000, "publish": "8000"},
        {"service": "api", "port": 9100, "publish": "9100"}]}
    assert [(r.service, r.role) for r in found] == [("frontend", "routed"), ("api", "routed"), ("worker", "swapped")]
    api = next(r for r in found if r.service == "api")
    assert "8000:8000" in api.reason and "9100:9100" in api.reason
    settings = parse_settings(block, {"frontend", "api", "worker"})
    assert settings.router is not None and settings.router.services == ("frontend", "api")
    assert settings.router.publish == "127.0.0.1:8080, 8000, 9100"


def test_a_route_setting_of_one_route_is_refused_when_there_are_several() -> None:
    with pytest.raises(ConfigError) as info:
        resolve({"router": {"health": {"path": "/up"}}},
                {"web": {"ports": [port(80, "80")]}, "api": {"ports": [port(8000, "8000")]}})
    assert info.value.path == "x-immutdock.router.health" and "routes" in info.value.hint
    assert "web on 80, api on 8000" in info.value.message


def test_a_single_inferred_route_keeps_the_blocks_router_settings() -> None:
    block, _ = resolve({"router": {"health": {"path": "/up"}, "image": "reg/router:1"}},
                       {"web": {"ports": [port(5000, "80")]}})
    assert block["router"] == {"service": "web", "port": 5000, "publish": "80", "health": {"path": "/up"},
                               "image": "reg/router:1"}


@pytest.mark.parametrize(("target", "mode", "said"), [
    (1883, "tcp", "MQTT's, not HTTP"),
    (22, "tcp", "SSH's, not HTTP"),
    (443, "tcp", "serves TLS itself: routed as TCP, passed through"),
    (8000, "http", ""),
])
def test_a_well_known_non_http_port_is_routed_as_tcp(target: int, mode: str, said: str) -> None:
    block, found = resolve({}, {"broker": {"ports": [port(target, "1883")]}})
    assert block["router"].get("mode", "http") == mode
    assert said in found[0].reason


def test_with_tls_443_and_80_to_one_port_make_one_https_route_that_redirects() -> None:
    ports = [{**port(8000, "80"), "host_ip": "127.0.0.1"}, {**port(8000, "443"), "host_ip": "127.0.0.1"}]
    block, found = resolve({"router": {"tls": {"cert": "site.pem"}}}, {"web": {"ports": ports}})
    assert block["router"] == {"service": "web", "port": 8000, "publish": "127.0.0.1:443",
                               "redirect": "127.0.0.1:80", "tls": {"cert": "site.pem"}}
    assert "serves HTTPS on 127.0.0.1:443" in found[0].reason and "redirects HTTP on 127.0.0.1:80" in found[0].reason
    block, _ = resolve({}, {"web": {"ports": ports}})  # without tls: two HTTP routes to the same port
    assert [r["publish"] for r in block["router"]["routes"]] == ["127.0.0.1:80", "127.0.0.1:443"]


# -- 4. swapped -----------------------------------------------------------------------------------
def test_the_rest_is_swapped() -> None:
    found = roles({"web": {"ports": [port(80, "80")]}, "worker": {"build": {"context": "."}},
                   "static": {"volumes": [bind("/srv/conf", "/conf", read_only=True)]}})
    assert found["worker"] == ("swapped", "publishes nothing and keeps no data", True)
    assert found["static"][0] == "swapped"


def test_with_an_explicit_router_another_publishing_service_is_left_to_the_checks() -> None:
    found = roles({"web": {}, "admin": {"ports": [port(9000, "9000")]}}, {"router": {"service": "web", "port": 80}})
    assert found["admin"][0] == "swapped"  # config refuses its ports, naming the fix


def test_no_service_publishes_means_no_router() -> None:
    block, _ = resolve({}, {"worker": {}})
    assert "router" not in block and block["stateful"] == []


def test_a_block_that_is_not_a_list_is_left_for_settings_to_name() -> None:
    block, _ = resolve({"stateful": "db"}, {"db": {}})
    assert block["stateful"] == "db"


def test_refers_to_matches_host_names_only() -> None:
    assert refers_to("shop-web", {"environment": {"API": "http://shop-web:8000"}})
    assert refers_to("shop-web", {"command": ["wait-for", "shop-web"]})
    assert not refers_to("shop-web", {"environment": {"API": "http://shop-web-2:8000"}})
    assert not refers_to("web", {"environment": {"API": "http://myweb:8000"}})


# -- the block `immutdock init` writes ----------------------------------------------------------------
def test_the_init_block_sets_what_was_inferred_with_each_reason_as_a_comment() -> None:
    import yaml

    from immutdock.config.infer import block_text
    from immutdock.config.model import Route, Router

    services = {"web": {"ports": [port(5000, "8000")], "depends_on": {
                    "migrate": {"condition": "service_completed_successfully"}}},
                "migrate": {}, "db": {"image": "postgres:16"}, "worker": {}}
    _, found = resolve({}, services)
    text = block_text(Router(routes=(Route(service="web", port=5000, publish_ip="", publish_port=8000),)), found)
    assert yaml.safe_load(text) == {"x-immutdock": {"router": {"service": "web", "port": 5000, "publish": "8000"},
                                                    "stateful": ["db"]}}
    assert "    # db: image postgres:16 is a well-known postgres image" in text
    assert "  # worker is swapped (blue/green, no route): publishes nothing and keeps no data" in text
    assert "  # migrate is job (once per release): web waits for it to complete" in text
    assert all(len(line) <= 100 for line in text.splitlines())
    routes = (Route("web", 5000, "", 80, redirect_port=8080), Route("mqtt", 1883, "127.0.0.1", 1883, mode="tcp"))
    several = yaml.safe_load(block_text(Router(routes=routes), found))["x-immutdock"]["router"]
    assert several == {"routes": [{"service": "web", "port": 5000, "publish": "80", "redirect": "8080"},
                                  {"service": "mqtt", "port": 1883, "publish": "127.0.0.1:1883", "mode": "tcp"}]}
    nothing = block_text(None, resolve({}, {"worker": {}})[1])
    assert yaml.safe_load(nothing) == {"x-immutdock": {"stateful": []}} and "no service publishes a port" in nothing
