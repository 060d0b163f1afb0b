"""Routes, TCP and TLS settings, the rendered HAProxy configuration and the certificate (pure)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from .helpers import full_model, validate
from immutdock.apply.router import parse_stat
from immutdock.config import tls
from immutdock.config.model import TLS
from immutdock.config.settings import parse_settings
from immutdock.errors import ConfigError
from immutdock.plan import haproxy, render

SERVICES = {"web", "api", "broker", "db"}


def router(block: dict[str, Any]) -> Any:
    return parse_settings({"router": block}, SERVICES).router


def refused(block: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        router(block)
    assert info.value.exit_code == 2 and info.value.hint
    return info.value


def test_routes_give_each_its_own_address_mode_and_health() -> None:
    found = router({"routes": [{"service": "web", "port": 8000, "publish": "80"},
                               {"service": "broker", "port": 1883, "publish": "127.0.0.1:1883", "mode": "tcp"}],
                    "request_timeout": 30})
    assert [(r.service, r.port, r.publish, r.mode) for r in found.routes] == [
        ("web", 8000, "80", "http"), ("broker", 1883, "127.0.0.1:1883", "tcp")]
    assert found.service == "web" and found.url == "http://127.0.0.1:80" and found.publish == "80, 127.0.0.1:1883"


@pytest.mark.parametrize(("block", "path", "said"), [
    ({"service": "web", "port": 80, "routes": [{"service": "web", "port": 80}]}, "x-immutdock.router.port",
     "beside routes"),
    ({"routes": []}, "x-immutdock.router.routes", "non-empty list"),
    ({"routes": [{"service": "web", "port": 80, "publish": "80"}, {"service": "api", "port": 80, "publish": "80"}]},
     "x-immutdock.router.routes", "port 80 is published twice"),
    ({"routes": [{"service": "web", "port": 80, "publish": "127.0.0.1:80"},
                 {"service": "api", "port": 80, "publish": "80"}]}, "x-immutdock.router.routes", "twice"),
    ({"routes": [{"service": "web", "port": 80, "bogus": 1}]}, "x-immutdock.router.routes[0].bogus", "unknown key"),
    ({"service": "web", "port": 80, "mode": "udp"}, "x-immutdock.router.mode", "not a route mode"),
    ({"service": "broker", "port": 1883, "mode": "tcp", "health": {"path": "/"}}, "x-immutdock.router.health.path",
     "checked by connecting"),
    ({"service": "web", "port": 80, "redirect": "8080"}, "x-immutdock.router.redirect", "needs x-immutdock.router.tls"),
    ({"service": "web", "port": 80, "tls": {"key": "k.pem"}}, "x-immutdock.router.tls.cert", "missing"),
    ({"service": "web", "port": 80, "tls": {"cert": 5}}, "x-immutdock.router.tls.cert", "not a file path"),
    ({"service": "broker", "port": 1883, "mode": "tcp", "tls": "site.pem"}, "x-immutdock.router.tls",
     "no route is HTTP"),
    ({"service": "web", "port": 80, "publish": "8443", "tls": "s.pem", "redirect": "8443"},
     "x-immutdock.router.publish", "published twice"),
])
def test_bad_routes_name_their_key_and_the_fix(block: dict[str, Any], path: str, said: str) -> None:
    err = refused(block)
    assert err.path == path and said in err.message, err


def test_a_routed_service_that_is_stateful_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"router": {"routes": [{"service": "web", "port": 80}, {"service": "db", "port": 5432,
                                                                                 "publish": "5432"}]},
                        "stateful": ["db"]}, SERVICES)
    assert "'db' is stateful" in info.value.message


def app(tmp_path: Path, block: dict[str, Any]) -> Any:
    model = full_model(tmp_path)
    return validate(model, {**block, "stateful": ["db"]}, tmp_path)


ROUTES = {"routes": [{"service": "web", "port": 8000, "publish": "8443", "redirect": "8080"},
                     {"service": "worker", "port": 1883, "publish": "1883", "mode": "tcp"}],
          "tls": {"cert": "site.crt", "key": "site.key"}}


def test_the_config_has_a_frontend_per_route_on_the_one_live_entry_and_backends_per_color(tmp_path: Path) -> None:
    config = haproxy.haproxy_config(app(tmp_path, {"router": ROUTES}))
    assert config.count("use_backend %[str(live),map(/var/lib/router/color.map,blue)]") == 2
    assert "use_backend %[str(live),map(/var/lib/router/color.map,blue)]_r1" in config
    assert "bind :8080 ssl crt /var/lib/router/tls/site.pem alpn h2,http/1.1" in config
    assert "bind :8081\n" in config and "bind :9080\n" in config  # the TCP route; the redirect
    assert "http-request redirect location https://%[req.hdr(host),regsub(:[0-9]+$,)]:8443%[capture.req.uri] " \
           "code 301" in config
    for backend in ("blue", "green", "blue_r1", "green_r1"):
        assert f"\nbackend {backend}\n" in config
    tcp = config[config.index("backend blue_r1"):config.index("backend green_r1")]
    assert "mode tcp" in tcp and "httpchk" not in tcp and "retry-on" not in tcp
    assert '"routed-blue-worker:${IMMUTDOCK_BLUE_R1_PORT}"' in tcp


def test_each_routes_backend_settings_have_their_own_keys(tmp_path: Path) -> None:
    found = app(tmp_path, {"router": ROUTES})
    settings = render.backend_settings(found)
    assert settings["port"] == "8000" and settings["r1_port"] == "1883" and settings["r1_timeout"] == "75"
    env = render.router_env({c: settings for c in render.COLORS})
    assert env["IMMUTDOCK_GREEN_R1_PORT"] == "1883" and env["IMMUTDOCK_GREEN_R1_SLOTS"] == "16"
    assert render.parse_router_env(env) == {"blue": settings, "green": settings}
    ports = render.router_project(found, "img", "blue")["services"]["router"]["ports"]
    assert ports == ["8443:8080", "1883:8081", "8080:9080"]


def test_the_certificate_is_never_in_the_routers_model_and_does_not_change_its_identity(tmp_path: Path) -> None:
    found = app(tmp_path, {"router": ROUTES})
    model = render.router_project(found, "img", "blue")
    assert model["services"]["router"]["environment"]["IMMUTDOCK_TLS_PEM"] == haproxy.TLS_PEM
    plain = app(tmp_path, {"router": {**ROUTES, "tls": None,
                                      "routes": [{**ROUTES["routes"][0], "redirect": None}, ROUTES["routes"][1]]}})
    assert render.router_identity(found, "img") != render.router_identity(plain, "img"), "TLS on or off is"


def test_stats_of_several_routes_are_told_apart_and_a_tcp_check_passes() -> None:
    header = "# pxname,svname,scur,status,addr,check_status,check_code\n"
    rows = ["blue,s1,1,UP,10.0.0.2:8000,L7OK,200", "blue,BACKEND,1,UP,,,", "blue_r1,s1,2,UP,10.0.0.3:1883,L4OK,",
            "blue_r1,BACKEND,2,UP,,,", "green_r1,s1,0,DOWN,10.0.0.4:1883,L4CON,", "route0,FRONTEND,3,OPEN,,,"]
    stats = parse_stat(header + "\n".join(rows) + "\n")
    assert [(s.backend, s.route) for s in stats.servers] == [("blue", 0), ("blue", 1), ("green", 1)]
    assert stats.sessions == {"blue": 3}, "a color's requests in flight are those of all its routes"
    assert [s.passing for s in stats.servers] == [True, True, False]
    assert len(stats.up("blue", 1)) == 1 and stats.up("green", 1) == []


CERT = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(b"certificate bytes") + b"-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(b"key bytes") + b"-----END PRIVATE KEY-----\n"


def test_the_pem_is_certificates_then_the_key_and_its_fingerprint_is_haproxys(tmp_path: Path) -> None:
    (tmp_path / "site.crt").write_bytes(b"subject=CN\n" + CERT + b"\n\n" + CERT)
    (tmp_path / "site.key").write_bytes(KEY)
    pem = tls.read_pem(TLS(cert="site.crt", key="site.key"), tmp_path)
    assert pem == CERT.strip() + b"\n" + CERT.strip() + b"\n" + KEY.strip() + b"\n"
    assert b"\n\n" not in pem, "no blank line: HAProxy's runtime API ends a payload at one"
    assert tls.fingerprint(pem) == hashlib.sha1(b"certificate bytes").hexdigest().upper()
    (tmp_path / "both.pem").write_bytes(KEY + CERT)
    assert tls.read_pem(TLS(cert="both.pem"), tmp_path) == CERT.strip() + b"\n" + KEY.strip() + b"\n"


@pytest.mark.parametrize(("files", "spec", "path", "said"), [
    ({}, TLS(cert="gone.crt"), "x-immutdock.router.tls.cert", "cannot read gone.crt"),
    ({"k.pem": KEY}, TLS(cert="k.pem"), "x-immutdock.router.tls.cert", "holds no certificate"),
    ({"c.pem": CERT}, TLS(cert="c.pem"), "x-immutdock.router.tls.key", "holds no private keys"),
    ({"c.pem": CERT, "k.pem": KEY + KEY}, TLS(cert="c.pem", key="k.pem"), "x-immutdock.router.tls.key",
     "holds 2 private keys"),
])
def test_an_unusable_certificate_names_the_key_never_the_content(tmp_path: Path, files: dict[str, bytes], spec: TLS,
                                                                path: str, said: str) -> None:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ConfigError) as info:
        tls.read_pem(spec, tmp_path)
    assert info.value.path == path and said in info.value.message
    assert "key bytes" not in str(info.value) and base64.encodebytes(b"key bytes").decode().strip() not in str(info.value)
