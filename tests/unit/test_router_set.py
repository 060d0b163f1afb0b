"""RouterSet: the routers of one app on several nodes (a Swarm's router tasks) answering as
one, and the gate asking each of them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from .helpers import container
from immutdock.apply.health import wait_ready
from immutdock.apply.router import BackendStats, RouterSet, Server
from immutdock.errors import EngineError


@dataclass
class Node:
    name: str


@dataclass
class Member:
    """One router's runtime API in memory: its own server slots, its own live color."""

    node: str
    passing: bool = True
    color: str | None = "blue"
    sessions: int = 0
    fails: bool = False
    armed: list[list[str]] = field(default_factory=list)
    held: list[list[str]] = field(default_factory=list)
    where: str = ""

    def __post_init__(self) -> None:
        self.engine = Node(self.node)
        self.container = container(f"router-{self.node}")

    @property
    def members(self) -> tuple["Member", ...]:
        return (self,)

    def live(self) -> str | None:
        return self.color

    def switch(self, color: str) -> None:
        if self.fails:
            raise EngineError(f"router on {self.node} did not answer")
        self.color = color

    def stats(self) -> BackendStats:
        # The same container behind another slot name than on the other routers.
        name = "s2" if self.node == "n2" else "s1"
        server = Server(backend="green", name=name, status="UP" if self.passing else "DOWN", sessions=self.sessions,
                        address="10.0.0.5:8000", check_status="L7OK" if self.passing else "L7STS", check_code=200)
        return BackendStats(servers=(server,), sessions={"blue": self.sessions})

    def arm(self, backend: str, servers: list[str]) -> None:
        if servers:
            self.armed.append(servers)

    def admit(self, backend: str, servers: list[str]) -> None:
        pass

    def hold(self, backends: list[str], unresolved_only: bool = False) -> None:
        self.held.append(list(backends))


def test_a_switch_reaches_every_router_and_one_that_fails_is_raised_after_all_were_tried() -> None:
    members = [Member("n1"), Member("n2", fails=True), Member("n3")]
    routers = RouterSet(members)  # type: ignore[arg-type]
    with pytest.raises(EngineError, match="n2"):
        routers.switch("green")
    assert [m.color for m in members] == ["green", "blue", "green"]
    assert routers.live() is None  # they disagree: no one color serves
    members[1].fails = False
    routers.switch("green")
    assert routers.live() == "green"


def test_requests_in_flight_add_up_over_the_routers() -> None:
    routers = RouterSet([Member("n1", sessions=2), Member("n2", sessions=3)])  # type: ignore[list-item]
    assert routers.stats().sessions == {"blue": 5}
    with pytest.raises(NotImplementedError):
        routers.arm("green", ["s1"])  # slot names are each router's own
    with pytest.raises(NotImplementedError):
        routers.admit("green", ["s1"])


def test_every_router_holds_the_new_colors_servers() -> None:
    members = [Member("n1"), Member("n2")]
    RouterSet(members).hold(["green", "green_r1"])  # type: ignore[arg-type]
    assert [m.held for m in members] == [[["green", "green_r1"]]] * 2


class Project:
    def __init__(self) -> None:
        self.web = replace(container("web-1", labels={"com.docker.compose.service": "web"}), ips=("10.0.0.5",))

    def project_containers(self, _project: str) -> list:
        return [self.web]


def test_the_gate_passes_only_when_every_router_passes_the_container() -> None:
    late = Member("n2", passing=False)
    routers = RouterSet([Member("n1"), late])  # type: ignore[list-item]
    gate = wait_ready(Project(), "app-green", routers, "green", ["web"], 0.5)  # type: ignore[arg-type]
    assert not gate.ok and "on the router at n2" in gate.reason, gate.reason
    assert late.armed == [["s2"]]  # each router armed its own slot
    late.passing = True
    assert wait_ready(Project(), "app-green", routers, "green", ["web"], 5).ok  # type: ignore[arg-type]
