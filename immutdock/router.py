"""The router gateway: HAProxy's runtime API, reached with `docker exec router-ctl ...`.

Nothing here is published on the host; the admin socket lives inside the container."""

from __future__ import annotations

import csv
import io
import posixpath
from dataclasses import dataclass

from immutdock.engine import ContainerState, Engine, ExecSession
from immutdock.errors import EngineError

LIVE_LINK = "/var/lib/router/live"  # a symlink to "blue" or "green", switched by router-ctl
ROUTER_ENTRYPOINT = "/usr/local/bin/router-entrypoint"  # in the router image; `... check` checks its config


@dataclass(frozen=True)
class Server:
    backend: str  # blue | green
    name: str
    status: str  # UP | DOWN | MAINT (resolution) | "UP 1/2" (going down) | "DOWN 1/2" (going up) | ...
    sessions: int
    address: str  # "IP:PORT", "" while unresolved
    check_status: str = ""  # the last health check: L7OK | L7STS | L4CON | INI | "" (none yet) ...
    check_code: int | None = None  # the HTTP status the last check got

    @property
    def resolved(self) -> bool:
        return "resolution" not in self.status.lower()

    @property
    def ip(self) -> str:
        return self.address.rpartition(":")[0].strip("[]")

    @property
    def passing(self) -> bool:
        """UP, and the last check HAProxy itself ran got an answer its expect rule passes (2xx on
        a health path the user set, below 500 on GET / otherwise): not a state set by DNS alone."""
        return self.status == "UP" and self.check_status == "L7OK" and self.check_code is not None


@dataclass(frozen=True)
class BackendStats:
    servers: tuple[Server, ...]
    sessions: dict[str, int]  # backend -> current sessions (requests in flight)

    def up(self, color: str) -> list[Server]:
        return [s for s in self.servers if s.backend == color and s.status.startswith("UP")]

    def resolved(self, color: str) -> list[Server]:
        return [s for s in self.servers if s.backend == color and s.resolved]


def parse_stat(csv_text: str) -> BackendStats:
    """Parse HAProxy's `show stat` CSV (pure)."""
    text = csv_text.lstrip("# ")
    servers: list[Server] = []
    sessions: dict[str, int] = {}
    for row in csv.DictReader(io.StringIO(text)):
        backend, name = row.get("pxname", ""), row.get("svname", "")
        if backend not in ("blue", "green"):
            continue
        scur = int(row.get("scur") or 0)
        if name == "BACKEND":
            sessions[backend] = scur
        elif name != "FRONTEND":
            code = row.get("check_code") or ""
            servers.append(Server(backend=backend, name=name, status=row.get("status", ""), sessions=scur,
                                  address=row.get("addr", ""), check_status=row.get("check_status") or "",
                                  check_code=int(code) if code.isdecimal() else None))
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
        if self._session is not None:
            code, out = self._session.run(" ".join(["router-ctl", *args]))
        else:
            code, out = self.engine.exec(self.container.id, ["router-ctl", *args])
        if code != 0:
            raise EngineError(f"router-ctl {' '.join(args)} failed: {out.strip()[-300:]}",
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

    def arm(self, color: str, servers: list[str]) -> None:
        """Force servers down: from now on only `rise` passing checks in a row bring them up."""
        if servers:
            self._ctl("arm", color, *servers)

    def stats(self) -> BackendStats:
        return parse_stat(self._ctl("stat"))

    def settings(self) -> dict[str, str]:
        """The settings HAProxy runs with (render.router_env's names)."""
        return dict(line.split("=", 1) for line in self._ctl("settings").splitlines() if "=" in line)

    def configure(self, env: dict[str, str]) -> None:
        """Check new settings, then apply them by a seamless reload: listening sockets and the
        live color's server states pass to the new HAProxy process; requests in flight finish."""
        self._ctl("configure", *(f"{k}={v}" for k, v in sorted(env.items())))
