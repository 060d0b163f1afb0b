"""The router's HAProxy configuration (pure): what `haproxy_config` renders for an app's routes,
and the names it shares with the code that drives the router (backends, settings, ports, paths)."""

from __future__ import annotations

import re

from immutdock.config.model import App

COLORS = ("blue", "green")

def routed_alias(color: str, service: str) -> str:
    """The name a routed service's containers of a color answer to on the edge network (the
    router's servers resolve it)."""
    return f"routed-{color}-{re.sub(r'[^a-z0-9-]+', '-', service.lower()).strip('-')}"


def route_key(index: int) -> str:
    """The prefix of a route's keys in a backend's settings: none for the first route (the keys
    records made before several routes hold), "r1_", "r2_" ... for the others."""
    return f"r{index}_" if index else ""


def backend_name(color: str, index: int) -> str:
    """HAProxy's backend of a color for route `index`: blue, green, blue_r1, ..."""
    return f"{color}_r{index}" if index else color


LISTEN_PORT = 8080  # route i listens on LISTEN_PORT + i inside the router container
REDIRECT_PORT = 9080  # and its HTTP-to-HTTPS redirect, when it has one, on REDIRECT_PORT + i
TLS_PEM = "/var/lib/router/tls/site.pem"  # uploaded into the router, never in its environment or labels
COLOR_MAP = "/var/lib/router/color.map"  # one entry, "live <color>": every route's frontend reads it
# How often the router checks a color's servers (its setting INTER, changed by a reload): every
# FAST_CHECKS while a gate or a watch looks at them, every LIVE_CHECKS once their color is live
# (an app does not feel it). Every STATE_CHECKS whatever INTER says while a server is down or
# changing state (a new server, forced down by the gate, gets its `rise` passing checks that
# fast), and at once after a connection to it failed (one that died is down in about 0.1 s).
# Between releases the idle color's servers are held (Router.hold): not checked, but its check
# task still wakes every INTER, and the first check of a server the gate admits comes at the next
# wake: FAST_CHECKS bounds how long after its admission that is.
INTER = "inter"
FAST_CHECKS, LIVE_CHECKS, STATE_CHECKS = "50ms", "2s", "50ms"
CHECKS = f"fastinter {STATE_CHECKS} downinter {STATE_CHECKS} observe layer4 error-limit 1 on-error fastinter"
CHECK_TIMEOUT = "2s"  # a check may take that long to answer (a slow health endpoint is not down)


def setting_name(color: str, key: str) -> str:
    """The environment variable of a color's backend setting: IMMUTDOCK_BLUE_PORT, IMMUTDOCK_GREEN_R1_RISE ..."""
    return f"IMMUTDOCK_{color.upper()}_{key.upper()}"


def _env(color: str, key: str) -> str:
    """A backend setting as HAProxy reads it from the environment (inside double quotes)."""
    return f"${{{setting_name(color, key)}}}"


def haproxy_config(app: App) -> str:
    """The router's haproxy.cfg for this file's routes (pure). One frontend per route, on its own
    port; two backends per route, one per color, whose settings are the environment's
    IMMUTDOCK_<COLOR>_<KEY> (changed by a reload: `router-ctl configure`). Every frontend picks
    its backend from the one map entry, so one `set map` switches every route at once."""
    router = app.settings.router
    assert router is not None
    tls = router.tls is not None
    lines = [
        "# Rendered by immutdock (immutdock/plan/haproxy.py: haproxy_config) for this app's routes.",
        "global",
        "    stats socket /run/haproxy/admin.sock mode 600 level admin expose-fd listeners",
        "    stats timeout 10s",
        "    log stdout format raw local0 notice",
        '    hard-stop-after "${IMMUTDOCK_HARD_STOP}s"',
        "    server-state-file /var/lib/router/servers.state",
    ]
    if tls:
        lines += ["    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets"]
    lines += [
        "",
        "defaults",
        "    log global",
        "    option dontlognull",
        "    timeout connect 2s",
        f"    timeout check {CHECK_TIMEOUT}",
        '    timeout client "${IMMUTDOCK_CLIENT_TIMEOUT}s"',
        "    # A request is sent again only when that is safe: its connection failed before anything",
        "    # was sent (then on another server), or (HTTP) its method is idempotent and the server",
        "    # closed without answering. A POST that reached a server is never sent twice.",
        "    retries 3",
        "    option redispatch 1",
        "    load-server-state-from-file global",
        "",
        "resolvers docker",
        "    nameserver engine 127.0.0.11:53",
        "    accepted_payload_size 8192",
        "    resolve_retries 3",
        "    timeout resolve 250ms",
        "    timeout retry 250ms",
        "    hold valid 1s",
        "    hold obsolete 1s",
        "    hold nx 250ms",
        "    # A slow or failed lookup keeps the addresses known so far (no server drops on a DNS hiccup).",
        "    hold refused 30s",
        "    hold timeout 30s",
        "    hold other 30s",
    ]
    for i, route in enumerate(router.routes):
        live = backend_name(f"%[str(live),map({COLOR_MAP},blue)]", i)  # the live color's backend
        lines += ["", f"# route {i}: {route.publish} -> {route.service} ({route.mode})",
                  f"frontend route{i}", f"    mode {route.mode}"]
        if route.mode == "tcp":
            lines += ["    option tcplog", f"    bind :{LISTEN_PORT + i}"]
        else:
            ssl = f" ssl crt {TLS_PEM} alpn h2,http/1.1" if tls else ""
            lines += ["    option httplog", "    timeout http-request 30s", "    timeout http-keep-alive 10s",
                      f"    bind :{LISTEN_PORT + i}{ssl}",
                      "    http-request disable-l7-retry unless METH_GET || METH_HEAD || METH_OPTIONS"]
            if tls:
                lines.append("    http-request set-header X-Forwarded-Proto https")
        lines.append(f"    use_backend {live}")
        if route.redirect_port:
            port = "" if route.publish_port == 443 else f":{route.publish_port}"
            lines += ["", f"frontend route{i}_redirect", "    mode http", "    option httplog",
                      "    timeout http-request 10s", f"    bind :{REDIRECT_PORT + i}",
                      "    http-request redirect location "
                      f"https://%[req.hdr(host),regsub(:[0-9]+$,)]{port}%[capture.req.uri] code 301"]
        for color in COLORS:
            key = route_key(i)
            lines += ["", f"backend {backend_name(color, i)}", f"    mode {route.mode}",
                      f'    timeout server "{_env(color, key + "timeout")}s"']
            if route.mode == "http":
                lines += ["    option httpchk",
                          f'    http-check send meth GET uri "{_env(color, key + "health_path")}"',
                          f'    http-check expect status "{_env(color, key + "health_status")}"',
                          "    retry-on conn-failure empty-response 0rtt-rejected"]
            lines += [f'    default-server inter "{_env(color, INTER)}" {CHECKS} '
                      f'rise "{_env(color, key + "rise")}" fall 2 resolvers docker init-addr last,none check',
                      f'    server-template s "1-{_env(color, key + "slots")}" '
                      f'"{routed_alias(color, route.service)}:{_env(color, key + "port")}"']
    return "\n".join(lines) + "\n"
