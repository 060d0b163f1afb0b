"""The new color's servers, held in the router until their container runs: the gate admits each
once its container runs (a check before that goes out before the container answers ARP, and
the kernel asks again only a second later), and none stays held once the gate has passed."""

from __future__ import annotations

from dataclasses import replace

from .helpers import container
from immutdock.apply.health import router_evidence, wait_ready
from immutdock.apply.router import BackendStats, Server


def server(name: str, status: str, address: str = "10.0.0.5:8000", check: str = "", code: int | None = None) -> Server:
    return Server(backend="green", name=name, status=status, sessions=0, address=address, check_status=check,
                  check_code=code)


def web(status: str = "running", ip: str = "10.0.0.5"):
    return replace(container("web-1", status=status, service="web"), ips=(ip,))


def test_a_held_server_is_admitted_once_its_container_runs_and_counts_as_armed() -> None:
    ev = router_evidence([server("s1", "MAINT")], {}, [web()])
    assert ev.to_admit == ("s1",) and ev.to_arm == () and ev.armed == {"s1": "10.0.0.5:8000"}
    assert not ev.ready  # admitted, not yet checked


def test_a_held_server_whose_container_does_not_run_yet_stays_held_and_unarmed() -> None:
    ev = router_evidence([server("s1", "MAINT")], {}, [])  # the container is still being started
    assert ev.to_admit == () and ev.to_arm == () and ev.armed == {}
    ev = router_evidence([server("s1", "MAINT", "10.0.0.9:8000")], {}, [web()])  # another container's address
    assert ev.to_admit == () and ev.armed == {} and not ev.ready


def test_a_server_nobody_held_is_armed_as_before() -> None:
    ev = router_evidence([server("s1", "UP")], {}, [web()])
    assert ev.to_arm == ("s1",) and ev.to_admit == ()


class Router:
    """One router whose green slots s1 and s2 were held: s1 resolves to the new container, s2
    does not resolve; an admitted slot passes its checks at the next look."""

    where = ""

    def __init__(self, held: tuple[str, ...] = ("s1", "s2")) -> None:
        self.held = set(held)
        self.admitted: list[tuple[str, tuple[str, ...]]] = []
        self.armed: list[str] = []
        self.looks = 0

    @property
    def members(self) -> tuple["Router", ...]:
        return (self,)

    def stats(self) -> BackendStats:
        self.looks += 1
        s1 = server("s1", "MAINT") if "s1" in self.held else server("s1", "UP", check="L7OK", code=200)
        s2 = server("s2", "MAINT (resolution)", "")
        return BackendStats(servers=(s1, s2), sessions={})

    def arm(self, backend: str, servers: list[str]) -> None:
        self.armed += servers

    def admit(self, backend: str, servers: list[str]) -> None:
        if servers:
            self.admitted.append((backend, tuple(servers)))
            self.held -= set(servers)


class Place:
    """The new color's one container: being started for the first `starting` looks, then running."""

    def __init__(self, starting: int) -> None:
        self.starting = starting
        self.looks = 0

    def project_containers(self, _project: str) -> list:
        self.looks += 1
        return [web("created" if self.looks <= self.starting else "running")]

    def engine_of(self, _c):
        raise AssertionError("no container of this test has a check of its own")


def test_the_gate_admits_a_held_server_only_once_its_container_runs_and_the_rest_when_it_passes() -> None:
    router, place = Router(), Place(starting=3)
    gate = wait_ready(place, "app-green", router, "green", ["web"], 5)  # type: ignore[arg-type]
    assert gate.ok, gate.reason
    # Held through the three looks that found the container still being started, admitted at
    # the first that found it running; s2, held and never resolved, admitted when the gate passed.
    assert router.admitted == [("green", ("s1",)), ("green", ("s2",))] and router.armed == []
    assert place.looks == 5


class Routers:
    """Two routers on two nodes (a Swarm's): their slots are their own."""

    where = ""

    def __init__(self, *members: Router) -> None:
        self.members = members


def test_each_router_admits_its_own_held_slots() -> None:
    held, free = Router(), Router(held=("s2",))  # on the second node the name resolved before the hold
    gate = wait_ready(Place(starting=0), "app-green", Routers(held, free), "green", ["web"], 5)  # type: ignore[arg-type]
    assert gate.ok, gate.reason
    assert held.admitted == [("green", ("s1",)), ("green", ("s2",))] and held.armed == []
    assert free.admitted == [("green", ("s2",))] and free.armed == ["s1"]
