"""settings: the x-immutdock block on its own (parse_settings, parse_publish)."""

from __future__ import annotations

import pytest

from .helpers import raises_config
from immutdock.config.model import Health, PreReleaseTest, Route, Router, Settings
from immutdock.config.settings import BLOCK, DEFAULT_PUBLISH, parse_publish, parse_settings

SERVICES = {"web", "worker", "db"}


def test_empty_block_means_defaults() -> None:
    assert parse_settings(None, SERVICES) == Settings()
    assert parse_settings({}, SERVICES) == Settings(router=None, stateful=(), keep=5, test=None)


def test_full_block() -> None:
    raw = {"router": {"service": "web", "port": "8000", "publish": "0.0.0.0:80", "image": "reg/router:2",
                      "health": {"path": "/healthz", "timeout": 15}},
           "stateful": ["db"], "keep": 10, "test": {"service": "worker", "command": ["pytest", "-q"]}}
    assert parse_settings(raw, SERVICES) == Settings(
        router=Router(routes=(Route(service="web", port=8000, publish_ip="0.0.0.0", publish_port=80,
                                    health=Health(path="/healthz", timeout=15.0)),), image="reg/router:2"),
        stateful=("db",), keep=10, test=PreReleaseTest(service="worker", command=("pytest", "-q")))


def test_parse_settings_does_not_mutate_the_block() -> None:
    raw = {"router": {"service": "web", "port": 8000}, "stateful": ["db", "db"], "test": {"service": "web", "command": "x"}}
    before = repr(raw)
    parse_settings(raw, SERVICES)
    assert repr(raw) == before


def test_default_publish_is_loopback() -> None:
    assert parse_publish(DEFAULT_PUBLISH, "p") == ("127.0.0.1", 8080)
    router = parse_settings({"router": {"service": "web", "port": 8000}}, SERVICES).router
    assert (router.main.publish_ip, router.main.publish_port) == ("127.0.0.1", 8080)


@pytest.mark.parametrize("value, expected", [
    ("8080", ("", 8080)), (8080, ("", 8080)), (" 8080 ", ("", 8080)), ("127.0.0.1:80", ("127.0.0.1", 80)),
    ("[::1]:8080", ("::1", 8080)), ("[::]:443", ("::", 443)), ("192.168.1.10:65535", ("192.168.1.10", 65535)),
])
def test_parse_publish_ok(value: object, expected: tuple[str, int]) -> None:
    assert parse_publish(value, "publish") == expected


@pytest.mark.parametrize("value", ["0", "65536", "70000", "abc", "localhost:80", "example.com:443", ":80",
                                   "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:x", "1.2.3:80", True, False, None, 80.0, "-1"])
def test_parse_publish_bad(value: object) -> None:
    with raises_config("a.b.publish"):
        parse_publish(value, "a.b.publish")


@pytest.mark.parametrize("raw, path", [
    ({"unknown": 1}, f"{BLOCK}.unknown"),
    ({"Router": {}}, f"{BLOCK}.Router"),  # keys are case-sensitive
    ({"router": {"service": "web", "port": 1, "hosts": []}}, f"{BLOCK}.router.hosts"),
    ({"router": {"service": "web", "port": 1, "health": {"timeout": 5, "retries": 3}}}, f"{BLOCK}.router.health.retries"),
    ({"test": {"service": "web", "command": "x", "timeout": 5}}, f"{BLOCK}.test.timeout"),
])
def test_unknown_keys_name_their_path(raw: dict, path: str) -> None:
    with raises_config(path):
        parse_settings(raw, SERVICES)


@pytest.mark.parametrize("port", [0, 70000, "abc", True, -80, "8o80", 8000.0])
def test_bad_router_port(port: object) -> None:
    with raises_config(f"{BLOCK}.router.port") as info:
        parse_settings({"router": {"service": "web", "port": port}}, SERVICES)
    assert repr(port) in info.value.message


def test_router_service_unknown_lists_the_services() -> None:
    with raises_config(f"{BLOCK}.router.service") as info:
        parse_settings({"router": {"service": "api", "port": 80}}, SERVICES)
    assert info.value.hint == "use one of: db, web, worker"


def test_router_on_a_stateful_service() -> None:
    with raises_config(f"{BLOCK}.router.service"):
        parse_settings({"router": {"service": "db", "port": 5432}, "stateful": ["db"]}, SERVICES)


def test_stateful_not_a_service_names_the_index() -> None:
    with raises_config(f"{BLOCK}.stateful[2]"):
        parse_settings({"stateful": ["db", "worker", "cache"]}, SERVICES)


def test_stateful_keeps_order_and_drops_duplicates() -> None:
    assert parse_settings({"stateful": ["worker", "db", "worker"]}, SERVICES).stateful == ("worker", "db")


@pytest.mark.parametrize("keep", [1, 0, -1, True, False, "3", 3.0])
def test_bad_keep(keep: object) -> None:
    with raises_config(f"{BLOCK}.keep"):
        parse_settings({"keep": keep}, SERVICES)


@pytest.mark.parametrize("health, path", [
    ({"timeout": 0}, "timeout"), ({"timeout": -5}, "timeout"), ({"timeout": "60"}, "timeout"),
    ({"timeout": False}, "timeout"), ({"path": "healthz"}, "path"), ({"path": ""}, "path"), ({"path": None}, "path"),
])
def test_bad_health(health: dict, path: str) -> None:
    with raises_config(f"{BLOCK}.router.health.{path}"):
        parse_settings({"router": {"service": "web", "port": 80, "health": health}}, SERVICES)


@pytest.mark.parametrize("hpath", [
    "/h;touch /tmp/pwned;true", "/he'alth", '/he"alth', "/a b", "/$(id)", "/`id`", "/a\\b", "/a#frag", "/a\nb",
    "/a\tb", "/" + "a" * 1024, "/ok$HOME",
])
def test_a_health_path_with_what_a_shell_or_config_line_reads_is_refused(hpath: str) -> None:
    with raises_config(f"{BLOCK}.router.health.path") as caught:
        parse_settings({"router": {"service": "web", "port": 80, "health": {"path": hpath}}}, SERVICES)
    assert "percent-encode" in (caught.value.hint or "")


@pytest.mark.parametrize("hpath", ["/", "/healthz", "/api/v1/health?full=1&x=y", "/he%27alth", "/a-b_c.d~e/f:g@h",
                                   "/health(1)*+,!"])
def test_url_paths_are_accepted(hpath: str) -> None:
    router = parse_settings({"router": {"service": "web", "port": 80, "health": {"path": hpath}}}, SERVICES).router
    assert router.main.health.path == hpath


@pytest.mark.parametrize("settle", [-1, 3601, "5", True, None, [5]])
def test_bad_settle(settle: object) -> None:
    with raises_config(f"{BLOCK}.settle"):
        parse_settings({"settle": settle}, SERVICES)


def test_settle_is_five_seconds_unless_set() -> None:
    assert parse_settings({}, SERVICES).settle == 5.0
    assert parse_settings({"settle": 10}, SERVICES).settle == 10.0
    assert parse_settings({"settle": 0}, SERVICES).settle == 0.0


def test_health_null_means_defaults() -> None:
    router = parse_settings({"router": {"service": "web", "port": 80, "health": None}}, SERVICES).router
    assert router.main.health == Health(path="/", timeout=60.0, statuses="200-499")  # any answer below 500 to GET /


def test_test_command_string_runs_in_a_shell() -> None:
    test = parse_settings({"test": {"service": "web", "command": "pytest -q && echo ok"}}, SERVICES).test
    assert test == PreReleaseTest(service="web", command=("sh", "-c", "pytest -q && echo ok"))


def test_test_null_means_none() -> None:
    assert parse_settings({"test": None}, SERVICES).test is None


def test_a_health_path_the_user_sets_must_answer_2xx() -> None:
    router = parse_settings({"router": {"service": "web", "port": 80, "health": {"path": "/"}}}, SERVICES).router
    assert router.main.health.statuses == "200-299"
    assert parse_settings({"router": {"service": "web", "port": 80}}, SERVICES).router.main.health.statuses == "200-499"


def test_hooks_one_or_a_list_per_moment() -> None:
    raw = {"stateful": ["db"], "hooks": {"pre-switch": {"service": "web", "command": "./smoke"},
                                         "post-switch": [{"service": "worker", "command": ["notify", "done"]},
                                                         {"service": "web", "command": ["true"]}]}}
    hooks = parse_settings(raw, SERVICES).hooks
    assert hooks["pre-switch"] == (PreReleaseTest("web", ("sh", "-c", "./smoke")),)
    assert hooks["post-switch"] == (PreReleaseTest("worker", ("notify", "done")), PreReleaseTest("web", ("true",)))
    assert parse_settings({}, SERVICES).hooks == {}


@pytest.mark.parametrize("hooks, path", [
    ({"on-deploy": {"service": "web", "command": "x"}}, "x-immutdock.hooks.on-deploy"),
    ({"pre-switch": {"command": "x"}}, "x-immutdock.hooks.pre-switch.service"),
    ({"post-switch": [{"service": "web", "command": "x"}, None]}, "x-immutdock.hooks.post-switch[1]"),
    ({"post-switch": [{"service": "web"}]}, "x-immutdock.hooks.post-switch[0].command"),
    ({"pre-switch": {"service": "db", "command": "x"}}, "x-immutdock.hooks.pre-switch.service"),
    ("smoke", "x-immutdock.hooks"),
])
def test_bad_hooks_name_their_key(hooks: object, path: str) -> None:
    with pytest.raises(Exception) as err:
        parse_settings({"stateful": ["db"], "hooks": hooks}, SERVICES)
    assert getattr(err.value, "path", None) == path, err.value


def test_a_literal_dollar_in_a_command_is_written_as_compose_writes_it() -> None:
    """compose's model keeps $$ for a literal $ (it interpolated $VAR already)."""
    raw = {"test": {"service": "web", "command": "echo $$HOME"},
           "hooks": {"post-switch": {"service": "web", "command": ["sh", "-c", "echo $$IMMUTDOCK_RELEASE"]}}}
    found = parse_settings(raw, SERVICES)
    assert found.test is not None and found.test.command == ("sh", "-c", "echo $HOME")
    assert found.hooks["post-switch"][0].command == ("sh", "-c", "echo $IMMUTDOCK_RELEASE")
