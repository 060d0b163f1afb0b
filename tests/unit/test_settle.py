"""settle: what ends the watch after the switch (pure), and the gate's rule for services that end."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Iterator

import pytest

from .helpers import container
from immutdock.apply.health import container_verdict
from immutdock.apply.router import BackendStats, Server
from immutdock.apply.settle import container_problem, router_problem, watch

WEB = replace(container("app-green-web-1", service="web"), started="2026-12-03T10:00:00Z")
WORKER = replace(container("app-green-worker-1", service="worker"), started="2026-12-03T10:00:00Z")
MIGRATE = container("app-green-migrate-1", service="migrate", status="exited", exit_code=0)
BEFORE = {c.id: c for c in (WEB, WORKER, MIGRATE)}


def test_nothing_changed_is_no_problem() -> None:
    assert container_problem(BEFORE, [WEB, WORKER, MIGRATE], {"migrate"}) is None


@pytest.mark.parametrize("now, reason", [
    (replace(WEB, status="exited", exit_code=3), "app-green-web-1 exited with code 3"),
    (replace(WEB, status="exited", exit_code=0), "app-green-web-1 exited with code 0"),
    (replace(WEB, status="dead", exit_code=137), "app-green-web-1 exited with code 137"),
    (replace(WEB, status="restarting"), "app-green-web-1 restarted"),
    (replace(WEB, restarts=1, started="2026-12-03T10:00:04Z"), "app-green-web-1 restarted"),
    (replace(WEB, started="2026-12-03T10:00:04Z"), "app-green-web-1 restarted"),
    (replace(WEB, health="unhealthy"), "app-green-web-1 turned unhealthy"),
    (replace(WEB, status="paused"), "app-green-web-1 is paused"),
])
def test_a_container_that_exits_restarts_or_turns_unhealthy_ends_the_watch(now, reason: str) -> None:
    found = container_problem(BEFORE, [now, WORKER, MIGRATE], {"migrate"})
    assert found is not None and found[0] == reason and found[1].id == WEB.id


def test_a_removed_container_ends_the_watch() -> None:
    assert container_problem(BEFORE, [WORKER, MIGRATE], {"migrate"}) == ("app-green-web-1 was removed", WEB)


def test_a_worker_that_ends_with_0_ends_the_watch_a_job_does_not() -> None:
    ended = replace(WORKER, status="exited", exit_code=0)
    assert container_problem(BEFORE, [WEB, ended, MIGRATE], {"migrate"})[0] == "app-green-worker-1 exited with code 0"
    assert container_problem(BEFORE, [WEB, WORKER, MIGRATE], {"migrate"}) is None
    failed_job = replace(MIGRATE, exit_code=1)
    assert container_problem(BEFORE, [WEB, WORKER, failed_job], {"migrate"})[0] == \
        "app-green-migrate-1 exited with code 1"


def server(backend: str, status: str, route: int = 0, name: str = "s1") -> Server:
    return Server(backend=backend, name=name, status=status, sessions=0, address="10.0.0.2:8000", route=route)


def stats(*servers: Server) -> BackendStats:
    return BackendStats(servers=servers, sessions={})


def test_a_route_without_an_up_server_of_the_new_color_ends_the_watch() -> None:
    up = stats(server("green", "UP"), server("green", "MAINT (resolution)", name="s2"), server("blue", "UP"))
    assert router_problem(up, "green", ["web"]) is None
    assert router_problem(stats(server("green", "UP 1/2")), "green", ["web"]) is None  # one failed check
    down = stats(server("green", "DOWN"), server("blue", "UP"))
    assert router_problem(down, "green", ["web"]) == "the router finds no healthy web server of green"
    two_routes = stats(server("green", "UP", 0), server("green", "DOWN", 1))
    assert router_problem(two_routes, "green", ["web", "api"]) == "the router finds no healthy api server of green"


def test_the_gate_fails_a_service_that_ends_unless_it_is_a_job() -> None:
    ended = container("app-green-worker-1", service="worker", status="exited", exit_code=0)
    verdict, reason, culprit = container_verdict([WEB, ended], jobs={"migrate"})
    assert verdict is False and culprit is ended and "exited with code 0: only a job" in reason
    assert container_verdict([WEB, MIGRATE], jobs={"migrate"})[0] is True
    assert container_verdict([WEB, ended])[0] is True  # without the jobs named, any one-shot may end


class FakeEngine:
    """project_containers answers from a list of looks, the last one repeated."""

    def __init__(self, *looks: list) -> None:
        self.looks = list(looks)

    def project_containers(self, _project: str) -> list:
        return self.looks.pop(0) if len(self.looks) > 1 else self.looks[0]

    @contextmanager
    def events(self, _what: str, **_labels: str) -> Iterator[Iterator[dict]]:
        yield iter(())  # the engine tells nothing: the looks alone find what happened


class FakeRouter:
    def __init__(self, *looks: BackendStats) -> None:
        self.looks = list(looks)

    def stats(self) -> BackendStats:
        return self.looks.pop(0) if len(self.looks) > 1 else self.looks[0]


UP = stats(server("green", "UP"))
DOWN = stats(server("green", "DOWN"))


def test_the_watch_ends_at_the_first_container_that_dies() -> None:
    dead = replace(WEB, status="exited", exit_code=3)
    found = watch(FakeEngine([WEB], [WEB], [WEB], [dead]), "app-green", FakeRouter(UP), "green", ["web"], (), 5)
    assert not found.ok and found.reason == "app-green-web-1 exited with code 3" and found.culprit == dead
    assert found.seconds < 1


def test_the_watch_forgives_a_router_blip_but_not_a_route_down_for_half_a_second() -> None:
    blip = watch(FakeEngine([WEB]), "app-green", FakeRouter(UP, DOWN, UP), "green", ["web"], (), 0.8)
    assert blip.ok and blip.seconds >= 0.8
    down = watch(FakeEngine([WEB]), "app-green", FakeRouter(UP, DOWN), "green", ["web"], (), 5)
    assert not down.ok and down.reason == "the router finds no healthy web server of green for 0.5 s"
    assert 0.5 <= down.seconds < 1.5
