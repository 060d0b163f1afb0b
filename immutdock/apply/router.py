"""The router gateway: HAProxy's runtime API, reached with `docker exec router-ctl ...`.

Nothing here is published on the host; the admin socket lives inside the container."""

from __future__ import annotations

import csv
import io
import posixpath
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from immutdock.errors import EngineError
from immutdock.gateways.docker_exec import ExecSession
from immutdock.gateways.engine import ContainerState, Engine
from immutdock.plan.haproxy import CHECKS, FAST_CHECKS, backend_name

LIVE_LINK = "/var/lib/router/live"  # a symlink to "blue" or "green", switched by router-ctl
UPLOAD = "/var/lib/router/tls/new.pem"  # where a new certificate is put before HAProxy takes it
ROUTER_ENTRYPOINT = "/usr/local/bin/router-entrypoint"  # in the router image; `... check` checks its config
ADMIN_SOCKET = "/run/haproxy/admin.sock"
_SEND = f'printf "%s\\n" "$1" | socat -t 2 stdio UNIX-CONNECT:{ADMIN_SOCKET}'  # $1: one line of commands
T = TypeVar("T")
FALLBACK = "fb"  # the prefix of a fallback server's name: fb<token>_<the old color's server>
_FALLBACK_NAME = re.compile(rf"{FALLBACK}[0-9a-z]+_s[0-9]+")
_ADDRESS = re.compile(r"[0-9.]+:[0-9]+|\[[0-9a-fA-F:.]+\]:[0-9]+")  # IP:PORT, as HAProxy's stat gives it
_SLOT = re.compile(r"s[0-9]+")  # a server slot of a color's backend (haproxy.haproxy_config's server-template)
# A fallback server's checks: as often as haproxy.haproxy_config checks every server; one slow
# check under load does not take it down (it is the old color's: down only when that one is).
_CHECK = f"check inter {FAST_CHECKS} {CHECKS} rise 1 fall 3"


@dataclass(frozen=True)
class Server:
    """One server of the router's backends, as HAProxy's stats show it."""

    backend: str  # the color: blue | green
    name: str
    status: str  # UP | DOWN | MAINT (resolution) | "UP 1/2" (going down) | "DOWN 1/2" (going up) | ...
    sessions: int
    address: str  # "IP:PORT", "" while unresolved
    check_status: str = ""  # the last health check: L7OK | L7STS | L4CON | INI | "" (none yet) ...
    check_code: int | None = None  # the HTTP status the last check got
    route: int = 0  # which of the router's routes this server is behind

    @property
    def resolved(self) -> bool:
        return "resolution" not in self.status.lower()

    @property
    def held(self) -> bool:
        """In maintenance by an admin command (Router.hold), with an address: not checked."""
        return self.status == "MAINT"

    @property
    def ip(self) -> str:
        return self.address.rpartition(":")[0].strip("[]")

    @property
    def passing(self) -> bool:
        """UP, and the last check HAProxy itself ran passed: an HTTP answer its expect rule passes
        (2xx on a health path the user set, below 500 on GET / otherwise), or on a TCP route a
        connection made. Not a state set by DNS alone."""
        if self.status != "UP":
            return False
        return (self.check_status == "L7OK" and self.check_code is not None) or self.check_status == "L4OK"


@dataclass(frozen=True)
class BackendStats:
    """The router's servers and the requests in flight on each color."""

    servers: tuple[Server, ...]
    sessions: dict[str, int]  # backend -> current sessions (requests in flight)
    backups: tuple[Server, ...] = ()  # the fallback: the other color's servers in this color's backends

    def up(self, color: str, route: int | None = None) -> list[Server]:
        return [s for s in self.servers if s.backend == color and s.status.startswith("UP")
                and (route is None or s.route == route)]

    def resolved(self, color: str) -> list[Server]:
        return [s for s in self.servers if s.backend == color and s.resolved]


_BACKEND = re.compile(r"(blue|green)(?:_r(\d+))?")  # haproxy.backend_name


def parse_stat(csv_text: str) -> BackendStats:
    """Parse HAProxy's `show stat` CSV (pure). A backend's fallback servers (Router.fallback_on)
    are the other color's: they are not among its servers, and the requests they carry count as
    that other color's."""
    text = csv_text.lstrip("# ")
    servers: list[Server] = []
    backups: list[Server] = []
    sessions: dict[str, int] = {}
    for row in csv.DictReader(io.StringIO(text)):
        name = row.get("svname", "")
        found = _BACKEND.fullmatch(row.get("pxname", ""))
        if not found:
            continue
        backend, route = found.group(1), int(found.group(2) or 0)
        scur = int(row.get("scur") or 0)
        if name == "BACKEND":
            sessions[backend] = sessions.get(backend, 0) + scur
        elif name != "FRONTEND":
            code = row.get("check_code") or ""
            server = Server(backend=backend, name=name, status=row.get("status", ""), sessions=scur,
                            address=row.get("addr", ""), check_status=row.get("check_status") or "",
                            check_code=int(code) if code.isdecimal() else None, route=route)
            if row.get("bck") != "1" or not _FALLBACK_NAME.fullmatch(name):  # a custom router's own backups stay
                servers.append(server)
                continue
            backups.append(server)  # the other color's server: what it carries is that color's to drain
            other = "green" if backend == "blue" else "blue"
            sessions[other] = sessions.get(other, 0) + scur
            sessions[backend] = sessions.get(backend, 0) - scur
    return BackendStats(servers=tuple(servers), sessions=sessions, backups=tuple(backups))


class Router:
    def __init__(self, engine: Engine, container: ContainerState) -> None:
        self.engine = engine
        self.container = container
        self._session: ExecSession | None = None

    @property
    def members(self) -> "tuple[Router, ...]":
        """The routers this one answers for (itself; see RouterSet)."""
        return (self,)

    where = ""  # which of several routers this is, as a reason names it ("": the only one)

    def open(self) -> "Router":
        """Keep a shell open in the router, so the switch later skips exec's start-up."""
        if self._session is None:
            self._session = ExecSession(self.engine, self.container.id)
        return self

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _ctl(self, *args: str) -> str:
        """Run router-ctl with `args`, each one word (never read by a shell)."""
        return self._run(["router-ctl", *args])

    def _run(self, argv: list[str]) -> str:
        if self._session is not None:
            code, out = self._session.run(argv)
        else:
            code, out = self.engine.exec(self.container.id, argv)
        if code != 0:
            raise EngineError(f"{shlex.join(argv)} failed: {out.strip()[-300:]}",
                              "check the router with `docker logs` on its container")
        return out

    def live(self) -> str | None:
        """The color the live link names. The engine gives the link's target resolved in the
        container ("/var/lib/router/green"), whatever the link holds."""
        stat = self.engine.path_stat(self.container.id, LIVE_LINK)
        color = posixpath.basename((stat or {}).get("linkTarget", ""))
        return color if color in ("blue", "green") else None

    def switch(self, color: str) -> None:
        self._ctl("switch", color)

    def fallback_on(self, color: str, token: str) -> int:
        """Add the other color's passing servers to `color`'s backends as backup servers
        (HAProxy's runtime API, nothing in the configuration changes): while every server of
        `color` is down, requests go to them, and a request `color` refused is sent again to
        them. Each is health-checked as `color`'s own servers are. `token` makes their names
        unique (a fallback a killed run left cannot stand in the way). How many were added."""
        stats = self.stats()
        self._drop(stats.backups)
        old = "green" if color == "blue" else "blue"
        added = 0
        for server in stats.servers:
            if server.backend != old or not server.passing or not _ADDRESS.fullmatch(server.address):
                continue
            name = f"{backend_name(color, server.route)}/{FALLBACK}{token}_{server.name}"
            answer = self._api(f"add server {name} {server.address} backup {_CHECK}")
            if "New server registered" not in answer:
                raise EngineError(f"HAProxy refused the fallback server {name}: {answer.strip()[-200:]}")
            # It passed its own color's checks: up at once (not one failed check from down).
            answer = self._api(f"enable health {name}; set server {name} health up; enable server {name}")
            if answer.strip():
                raise EngineError(f"HAProxy did not start the fallback server {name}: {answer.strip()[-200:]}")
            added += 1
        return added

    def fallback_off(self) -> None:
        """Remove every fallback server; one that still carries a request is only put in
        maintenance (it takes no new one; the next fallback_on removes it)."""
        self._drop(self.stats().backups)

    def _drop(self, backups: tuple[Server, ...]) -> None:
        for server in backups:
            name = f"{backend_name(server.backend, server.route)}/{server.name}"
            # One still holding a connection stays, in maintenance (it takes no new request).
            self._api(f"disable server {name}; del server {name}")

    def _api(self, line: str) -> str:
        """One line to HAProxy's runtime API (admin socket), its answer. The line goes to the
        shell as data, never as code."""
        return self._run(["sh", "-c", _SEND, "sh", line])

    def arm(self, backend: str, servers: list[str]) -> None:
        """Force servers of a backend (blue, green_r1, ...) down: from now on only `rise` passing
        checks in a row bring them up."""
        if servers:
            self._ctl("arm", backend, *servers)

    def hold(self, backends: Sequence[str], unresolved_only: bool = False) -> None:
        """Hold every server slot of `backends` (`unresolved_only`: those no name resolves to
        yet) in maintenance: HAProxy gives it the address its name resolves to but neither
        checks it nor sends it a request, until `admit`. A new container's name resolves while
        the engine still starts it: a check sent then goes out before its interface answers
        ARP, and the kernel asks again only a second later."""
        slots = [f"{backend_name(s.backend, s.route)}/{s.name}" for s in self.stats().servers
                 if backend_name(s.backend, s.route) in backends and _SLOT.fullmatch(s.name)
                 and not (unresolved_only and s.resolved)]
        self._commands([f"set server {slot} state maint" for slot in slots])

    def admit(self, backend: str, servers: Sequence[str]) -> None:
        """Let held servers of `backend` out of maintenance, forced down: only `rise` passing
        checks bring one up (leaving maintenance alone would make it UP before any check)."""
        self._commands([f"set server {backend}/{s} {what}" for s in servers if _SLOT.fullmatch(s)
                        for what in ("state ready", "health down")])

    def _commands(self, commands: Sequence[str]) -> None:
        """Commands to HAProxy's runtime API, in one line; one it refused is raised."""
        if not commands:
            return
        answer = self._api("; ".join(commands)).strip()
        if answer:
            raise EngineError(f"HAProxy refused a server state change ({commands[0]}, ...): {answer[-200:]}",
                              "check the router with `docker logs` on its container")

    def stats(self) -> BackendStats:
        return parse_stat(self._ctl("stat"))

    def settings(self) -> dict[str, str]:
        """The settings HAProxy runs with (render.router_env's names)."""
        return dict(line.split("=", 1) for line in self._ctl("settings").splitlines() if "=" in line)

    def certificate(self) -> str | None:
        """The SHA-1 fingerprint of the certificate HAProxy serves (hex, upper case), or None."""
        found = re.search(r"SHA1 FingerPrint:\s*([0-9A-Fa-f]+)", self._ctl("cert"))
        return found.group(1).upper() if found else None

    def load_certificate(self, pem: bytes) -> None:
        """Serve `pem` (certificate chain and key) from now on: uploaded into the router, then
        swapped in by HAProxy's runtime API, with no reload and no connection dropped."""
        self.engine.put_files(self.container.id, {UPLOAD: pem})
        self._ctl("cert-load", UPLOAD)

    def configure(self, env: dict[str, str]) -> None:
        """Check new settings, then apply them by a seamless reload: listening sockets and the
        live color's server states pass to the new HAProxy process; requests in flight finish."""
        self._ctl("configure", *(f"{k}={v}" for k, v in sorted(env.items())))


class RouterSet(Router):
    """Several routers that take one app's traffic (a Swarm runs one task of the router on
    each routing node) answering as one: a switch, an arm, a fallback or a new certificate
    goes to every one; the live color is theirs when they agree; stats join theirs (requests
    in flight add up). The gate asks each (`members`): their server slots are their own."""

    def __init__(self, routers: "list[Router]") -> None:
        assert routers
        super().__init__(routers[0].engine, routers[0].container)
        self._members = tuple(routers)
        for r in routers:
            r.where = f" on the router at {r.engine.name}" if len(routers) > 1 else ""

    @property
    def members(self) -> "tuple[Router, ...]":
        return self._members

    def _each(self, fn: "Callable[[Router], T]") -> "list[T]":
        """fn on every router at once (a switch reaches them all within one round trip); every
        one is tried, and the first failure is raised after."""
        with ThreadPoolExecutor(max_workers=min(8, len(self._members))) as pool:
            futures = [pool.submit(fn, r) for r in self._members]
        results, failure = [], None
        for f in futures:
            try:
                results.append(f.result())
            except Exception as exc:  # noqa: BLE001 - raised below, once all were tried
                failure = failure or exc
        if failure is not None:
            raise failure
        return results

    def open(self) -> "Router":
        self._each(lambda r: r.open())
        return self

    def close(self) -> None:
        for r in self._members:
            r.close()

    def live(self) -> str | None:
        """The color every router sends traffic to; None when they disagree (a switch cut short)."""
        colors = set(self._each(lambda r: r.live()))
        return colors.pop() if len(colors) == 1 else None

    def switch(self, color: str) -> None:
        self._each(lambda r: r.switch(color))

    def fallback_on(self, color: str, token: str) -> int:
        return sum(self._each(lambda r: r.fallback_on(color, token)))

    def fallback_off(self) -> None:
        self._each(lambda r: r.fallback_off())

    def arm(self, backend: str, servers: list[str]) -> None:
        raise NotImplementedError("arm each of `members`: their server slots are their own")

    def admit(self, backend: str, servers: Sequence[str]) -> None:
        raise NotImplementedError("admit on each of `members`: their server slots are their own")

    def hold(self, backends: Sequence[str], unresolved_only: bool = False) -> None:
        self._each(lambda r: r.hold(backends, unresolved_only))

    def stats(self) -> BackendStats:
        found = self._each(lambda r: r.stats())
        sessions: dict[str, int] = {}
        for stats in found:
            for backend, n in stats.sessions.items():
                sessions[backend] = sessions.get(backend, 0) + n
        return BackendStats(servers=tuple(s for st in found for s in st.servers), sessions=sessions,
                            backups=tuple(b for st in found for b in st.backups))

    def settings(self) -> dict[str, str]:
        return self._members[0].settings()

    def certificate(self) -> str | None:
        """The certificate every router serves; None when one serves none or they differ."""
        served = set(self._each(lambda r: r.certificate()))
        return served.pop() if len(served) == 1 else None

    def load_certificate(self, pem: bytes) -> None:
        self._each(lambda r: r.load_certificate(pem))

    def configure(self, env: dict[str, str]) -> None:
        self._each(lambda r: r.configure(env))
