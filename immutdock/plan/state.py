"""What one app is on a target, as plain data: its containers and records, read by
immutdock.targets.observe (no engine call here; no decisions either, those are immutdock.plan.release's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Mapping

from immutdock import labels as L
from immutdock.targets import ledger

ENDED = frozenset({"created", "exited", "dead"})  # a container's status when it runs no more (or never ran)


@dataclass(frozen=True)
class ContainerState:
    """One container as the engine reports it."""

    id: str
    name: str
    labels: Mapping[str, str]
    status: str  # created | running | exited | ...
    health: str | None  # starting | healthy | unhealthy | None when no HEALTHCHECK
    exit_code: int | None
    image: str
    stop_timeout: int
    ips: tuple[str, ...] = ()  # its addresses, one per network it joined
    image_id: str = ""  # the ID of the image it was created from
    mounts: tuple[str, ...] = ()  # where volumes, binds and tmpfs are mounted in it
    finished: str = ""  # when it last stopped (RFC 3339), "" when it never did
    volumes: tuple[str, ...] = ()  # the engine names of the named volumes it mounts
    started: str = ""  # when it last started (RFC 3339)
    restarts: int = 0  # how often the engine restarted it (its restart policy)
    ports: tuple[str, ...] = ()  # as `docker ps` shows them: "127.0.0.1:8080->80/tcp", "8000/tcp"
    probe: tuple[str, ...] = ()  # the argv of its health check, as the engine runs it; () when none
    probe_timeout: float = 30.0  # seconds that check may take

    @property
    def service(self) -> str:
        """Its service in the file (a Swarm task's container has it from immutdock's label)."""
        return self.labels.get(L.COMPOSE_SERVICE) or self.labels.get(L.SERVICE, "")

    @property
    def project(self) -> str:
        """Its compose project, or its stack on a Swarm."""
        return self.labels.get(L.COMPOSE_PROJECT) or self.labels.get(L.STACK, "")


@dataclass(frozen=True)
class AppState:
    """What runs of the app on a target, and what its records say."""

    app: str
    records: tuple[ledger.Record, ...]
    router: ContainerState | None
    live_color: str | None  # what the router sends traffic to
    colors: dict[str, tuple[ContainerState, ...]] = field(default_factory=dict)
    state: tuple[ContainerState, ...] = ()
    containers: tuple[ContainerState, ...] = ()  # every one with the app's label, whatever its role

    def color_release(self, color: str | None) -> str | None:
        found = {c.labels.get(L.RELEASE) for c in self.colors.get(color or "", ())}
        numbered = [(ledger.parse_release_id(r) or 0, r) for r in found if r]
        return max(numbered)[1] if numbered else None

    def color_config_hash(self, color: str | None) -> str | None:
        found = {c.labels.get(L.CONFIG_HASH) for c in self.colors.get(color or "", ())}
        return found.pop() if len(found) == 1 else None

    @property
    def salt(self) -> str | None:
        """The salt of the newest record's digests: the same value keeps the same digest."""
        salted = [r.salt for r in self.records if r.salt]
        return salted[-1] if salted else None

    @property
    def live_release(self) -> str | None:
        return self.color_release(self.live_color)

    @property
    def live_record(self) -> ledger.Record | None:
        """The record of the release that serves (None when nothing does): a good one, or one
        still "switching" (immutdock died after its switch, before its watch ended)."""
        live = self.live_release
        return next((r for r in reversed(self.records) if r.id == live and r.outcome in ("ok", "switching")), None)

    def color_running(self, color: str | None, jobs: Collection[str] | None = None) -> bool:
        """Whether every container of `color` runs; one of a job (of `jobs`; None: of any
        service) may have ended with 0."""
        cs = self.colors.get(color or "", ())
        return bool(cs) and self.color_stopped(color, jobs) is None

    def color_stopped(self, color: str | None, jobs: Collection[str] | None = None) -> ContainerState | None:
        """The first container of `color` that does not run (and is not a job that ended with 0)."""
        return next((c for c in self.colors.get(color or "", ()) if c.status != "running" and not (
            c.status == "exited" and c.exit_code == 0 and (jobs is None or c.service in jobs))), None)

    @property
    def recreating(self) -> ContainerState | None:
        """The marker of a stateful recreate under way, or of one a killed immutdock left
        (see immutdock.targets.recreate)."""
        return next((c for c in self.containers if c.labels.get(L.ROLE) == "recreate"), None)

    @property
    def switching(self) -> bool:
        """Whether a record is still "switching": a release under way, or one killed between
        its record and the end of its watch."""
        return any(r.outcome == "switching" for r in self.records)

    @property
    def idle(self) -> list[str]:
        """Colors that exist but do not serve: half-made or not retired."""
        return [c for c in ("blue", "green") if self.colors.get(c) and c != self.live_color]

    @property
    def not_retired(self) -> list[str]:
        """Idle colors that served before the live release: a release that switched traffic
        was interrupted or failed before it retired them."""
        live = ledger.parse_release_id(self.live_release or "")
        return [c for c in self.idle
                if live is not None and (ledger.parse_release_id(self.color_release(c) or "") or live) < live]

    @property
    def half_made(self) -> list[str]:
        """Idle colors that never went live: left by a release that failed or was killed before
        its switch (or one still running)."""
        retired = self.not_retired
        return [c for c in self.idle if c not in retired]

    def highest_release_number(self) -> int:
        numbers = [r.number for r in self.records]
        for cs in self.colors.values():
            for c in cs:
                n = ledger.parse_release_id(c.labels.get(L.RELEASE, ""))
                if n is not None:
                    numbers.append(n)
        return max(numbers, default=0)
