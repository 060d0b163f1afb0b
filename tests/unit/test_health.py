"""health.container_verdict: the container half of the health gate (pure)."""

from __future__ import annotations

import pytest

from immutdock.health import container_verdict

from .helpers import container


def running(name: str = "web", health: str | None = None):
    return container(name, status="running", health=health)


def test_no_containers_yet() -> None:
    assert container_verdict([]) == (None, "no containers yet", None)


@pytest.mark.parametrize("health", [None, "healthy"])
def test_all_running_and_healthy(health: str | None) -> None:
    verdict, reason, culprit = container_verdict([running("web", health), running("worker")])
    assert (verdict, culprit) == (True, None)
    assert reason == "all containers running and healthy"


@pytest.mark.parametrize("code", [1, 2, 137, -1])
def test_exited_non_zero_fails_at_once(code: int) -> None:
    bad = container("migrate", status="exited", exit_code=code)
    verdict, reason, culprit = container_verdict([running("web", "starting"), bad])
    assert (verdict, culprit) == (False, bad)
    assert reason == f"migrate exited with code {code}"


def test_dead_non_zero_fails() -> None:
    bad = container("web", status="dead", exit_code=255)
    assert container_verdict([bad])[0] is False


def test_exited_zero_is_a_finished_one_shot() -> None:
    done = container("migrate", status="exited", exit_code=0)
    assert container_verdict([running("web", "healthy"), done]) == (True, "all containers running and healthy", None)
    assert container_verdict([done]) == (True, "all containers running and healthy", None)


def test_unhealthy_fails() -> None:
    bad = running("web", "unhealthy")
    verdict, reason, culprit = container_verdict([running("worker"), bad])
    assert (verdict, reason, culprit) == (False, "web is unhealthy", bad)


def test_starting_waits() -> None:
    slow = running("web", "starting")
    verdict, reason, culprit = container_verdict([running("worker"), slow])
    assert (verdict, culprit) == (None, slow)
    assert reason == "waiting for web (starting)"


@pytest.mark.parametrize("status", ["created", "paused", "removing"])
def test_not_yet_running_waits(status: str) -> None:
    c = container("web", status=status)
    assert container_verdict([c]) == (None, f"waiting for web ({status})", c)


def test_restarting_fails() -> None:
    bad = container("web", status="restarting")
    verdict, reason, culprit = container_verdict([running("worker"), bad])
    assert (verdict, reason, culprit) == (False, "web keeps restarting", bad)


def test_a_failure_wins_over_waiting_wherever_it_is() -> None:
    slow = running("a", "starting")
    bad = running("z", "unhealthy")
    assert container_verdict([slow, bad])[0] is False
    assert container_verdict([bad, slow])[0] is False


def test_first_waiting_container_is_named() -> None:
    first, second = running("a", "starting"), container("b", status="created")
    assert container_verdict([first, second])[2] is first


def test_dead_with_exit_code_zero_fails() -> None:
    assert container_verdict([container("web", status="dead", exit_code=0)])[0] is False
