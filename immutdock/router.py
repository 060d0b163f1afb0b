"""The router gateway: HAProxy's runtime API, reached with `docker exec router-ctl ...`.

Nothing here is published on the host; the admin socket lives inside the container."""

from __future__ import annotations

import csv
import io
import posixpath
import re
import shlex
from dataclasses import dataclass

from immutdock.docker_exec import ExecSession
from immutdock.engine import ContainerState, Engine
from immutdock.errors import EngineError

LIVE_LINK = "/var/lib/router/live"  # a symlink to "blue" or "green", switched by router-ctl
UPLOAD = "/var/lib/router/tls/new.pem"  # where a new certificate is put before HAProxy takes it
ROUTER_ENTRYPOINT = "/usr/local/bin/router-entrypoint"  # in the router image; `... check` checks its config


@dataclass(frozen=True)
class Server:
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
    servers: tuple[Server, ...]
    sessions: dict[str, int]  # backend -> current sessions (requests in flight)

    def up(self, color: str, route: int | None = None) -> list[Server]:
        return [s for s in self.servers if s.backend == color and s.status.startswith("UP")
                and (route is None or s.route == route)]

    def resolved(self, color: str) -> list[Server]:
        return [s for s in self.servers if s.backend == color and s.resolved]


_BACKEND = re.compile(r"(blue|green)(?:_r(\d+))?")  # render.backend_name


def parse_stat(csv_text: str) -> BackendStats:
    """Parse HAProxy's `show stat` CSV (pure)."""
    text = csv_text.lstrip("# ")
    servers: list[Server] = []
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
            servers.append(Server(backend=backend, name=name, status=row.get("status", ""), sessions=scur,
                                  address=row.get("addr", ""), check_status=row.get("check_status") or "",
                                  check_code=int(code) if code.isdecimal() else None, route=route))
    return BackendStats(servers=tuple(servers), sessions=sessions)


class Router:
    def __init__(self, engine: Engine, container: ContainerState) -> None:
        self.engine = engine
        self.container = container
        self._session: ExecSession | None = None

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
        argv = ["router-ctl", *args]
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

    def arm(self, backend: str, servers: list[str]) -> None:
        """Force servers of a backend (blue, green_r1, ...) down: from now on only `rise` passing
        checks in a row bring them up."""
        if servers:
            self._ctl("arm", backend, *servers)

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
