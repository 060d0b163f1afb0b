"""The health gate: its container half (pure), its router half, and the containers' own checks it runs."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from .helpers import container
from immutdock.apply.health import PROBE_EVERY, PROBE_RETRY, Probes, container_verdict, wait_ready
from immutdock.gateways.engine_health import FAILED, PASSED, TIMED_OUT, UNKNOWN, probe_of
from immutdock.plan.state import ContainerState


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


# -- the router half: evidence from HAProxy's own checks, never from DNS alone --------------

from immutdock.apply.health import router_evidence  # noqa: E402
from immutdock.apply.router import Server  # noqa: E402


def server(name: str, status: str = "UP", address: str = "10.0.0.5:8000", check: str = "L7OK",
           code: int | None = 200) -> Server:
    return Server(backend="green", name=name, status=status, sessions=0, address=address, check_status=check,
                  check_code=code)


def web(ip: str = "10.0.0.5", name: str = "web-1"):
    return replace(running(name), ips=(ip, "172.30.0.9"))


def test_a_server_up_by_resolution_is_armed_not_trusted() -> None:
    fake_up = server("s1", check="", code=None)  # HAProxy: "UP/READY (resolves again)", no check ran
    ev = router_evidence([fake_up], {}, [web()])
    assert ev.to_arm == ("s1",) and not ev.ready
    assert ev.armed == {"s1": "10.0.0.5:8000"}


def test_even_a_passing_check_before_arming_is_not_evidence() -> None:
    ev = router_evidence([server("s1")], {}, [web()])
    assert ev.to_arm == ("s1",) and not ev.ready


def test_armed_and_passing_on_every_routed_container_is_ready() -> None:
    armed = {"s1": "10.0.0.5:8000", "s2": "10.0.0.6:8000"}
    ev = router_evidence([server("s1"), server("s2", address="10.0.0.6:8000")], armed,
                         [web(), web("10.0.0.6", "web-2")])
    assert ev.ready and ev.waiting == ()


def test_one_replica_without_a_passing_server_keeps_the_gate_closed() -> None:
    armed = {"s1": "10.0.0.5:8000", "s2": "10.0.0.6:8000"}
    second = web("10.0.0.6", "web-2")
    ev = router_evidence([server("s1"), server("s2", "DOWN", "10.0.0.6:8000", "L7STS", 500)], armed, [web(), second])
    assert not ev.ready and ev.waiting == (second,)
    assert ev.last_check == "the check got HTTP 500", "in words, not HAProxy's L7STS"


@pytest.mark.parametrize("status,check,code", [
    ("UP", "L7STS", 500),     # answers 500 (status can still say UP until `fall` failures)
    ("UP", "L7STS", 302),     # a redirect when the health path must answer 2xx
    ("DOWN", "L4CON", None),  # never listens
    ("DOWN 1/2", "L7OK", 200),  # one pass of the two `rise` needs
    ("UP 1/2", "L7OK", 200),  # going down
    ("UP", "INI", None),      # no check finished yet
])
def test_no_pass_without_a_passing_check_and_full_rise(status: str, check: str, code: int | None) -> None:
    ev = router_evidence([server("s1", status, check=check, code=code)], {"s1": "10.0.0.5:8000"}, [web()])
    assert not ev.ready


def test_haproxys_expect_rule_decides_which_answer_passes() -> None:
    """Without a health path the router's rule is "below 500": HAProxy reports a 404 as L7OK."""
    ev = router_evidence([server("s1", "UP", check="L7OK", code=404)], {"s1": "10.0.0.5:8000"}, [web()])
    assert ev.ready


def test_a_server_that_moved_or_came_back_is_armed_again() -> None:
    ev = router_evidence([server("s1", address="10.0.0.7:8000")], {"s1": "10.0.0.5:8000"}, [web("10.0.0.7")])
    assert ev.to_arm == ("s1",) and not ev.ready


def test_unresolved_servers_are_dropped_from_the_armed_set() -> None:
    ev = router_evidence([server("s1", "MAINT (resolution)", "", "", None)], {"s1": "10.0.0.5:8000"}, [web()])
    assert ev.armed == {} and ev.to_arm == () and not ev.ready


def test_a_passing_server_at_another_address_is_not_evidence_for_this_container() -> None:
    ev = router_evidence([server("s1", address="10.0.0.9:8000")], {"s1": "10.0.0.9:8000"}, [web("10.0.0.5")])
    assert not ev.ready and len(ev.waiting) == 1


def test_no_routed_container_is_never_ready_by_itself() -> None:
    ev = router_evidence([], {}, [])
    assert ev.ready  # nothing to wait for in the router; wait_ready itself refuses an empty routed set


# -- a container's own health check, run by the gate before the engine's first one ---------


class Place:
    """A project whose one container the engine still calls "starting"; each run of its own
    check says `result` (or what `results` says, in turn); every run is counted."""

    def __init__(self, probe: tuple[str, ...] = ("wget", "-q", "http://127.0.0.1/"), result: str = PASSED,
                 health: str = "starting") -> None:
        self.web = replace(container("web-1", status="running", health=health), probe=probe, started="t1")
        self.result = result
        self.runs: list[ContainerState] = []

    def project_containers(self, _project: str) -> list:
        return [self.web]

    def engine_of(self, _c):
        return self

    def health_probe(self, c) -> str:
        self.runs.append(c)
        return self.result


def _gate(place: Place, timeout: float):
    return wait_ready(place, "app-green", None, "green", [], timeout)  # type: ignore[arg-type]


def test_a_starting_container_whose_own_check_passes_is_healthy_long_before_the_engine_says_so() -> None:
    place = Place()
    gate = _gate(place, 5)
    assert gate.ok and gate.seconds < 1, gate
    assert [c.probe for c in place.runs] == [("wget", "-q", "http://127.0.0.1/")]


def test_a_check_that_fails_leaves_the_gate_waiting_and_is_run_again_at_most_every_quarter_second() -> None:
    place = Place(result=FAILED)
    gate = _gate(place, 1.0)
    assert not gate.ok and "waiting for web-1 (starting)" in gate.reason, gate.reason
    assert 2 <= len(place.runs) <= 1.0 / PROBE_EVERY + 1, place.runs


def test_the_engines_unhealthy_after_a_passing_check_fails_the_gate() -> None:
    place = Place()
    passed = []

    def probe(c) -> str:
        place.runs.append(c)
        passed.append(c)
        return PASSED

    def project_containers(_project: str) -> list:  # the engine says unhealthy once the check passed here
        return [replace(place.web, health="unhealthy") if passed else place.web]

    place.health_probe = probe  # type: ignore[method-assign]
    place.project_containers = project_containers  # type: ignore[method-assign]
    gate = _gate(place, 5)
    assert not gate.ok and gate.reason == "web-1 is unhealthy", gate
    assert len(place.runs) == 1


def test_a_restarted_container_is_checked_anew_not_taken_healthy_on_its_last_pass() -> None:
    place = Place()
    probes = Probes(place)  # type: ignore[arg-type]
    deadline = time.monotonic() + 2
    while probes.seen([place.web])[0].health != "healthy":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    restarted = replace(place.web, started="t2", restarts=1)  # the same container, a new process
    place.result = FAILED
    assert probes.seen([restarted])[0].health == "starting"
    time.sleep(0.3)
    assert probes.seen([restarted])[0].health == "starting"
    assert place.runs[0].started == "t1" and {c.started for c in place.runs[1:]} == {"t2"}


def test_a_container_without_a_check_is_never_run_and_waits_for_the_engine() -> None:
    place = Place(probe=())
    assert not _gate(place, 0.5).ok
    assert place.runs == []


def test_a_run_that_timed_out_is_the_last_one() -> None:
    place = Place(result=TIMED_OUT)
    assert not _gate(place, 1.0).ok
    assert len(place.runs) == 1


@pytest.mark.parametrize("how", ["raises", UNKNOWN])
def test_a_run_that_could_not_tell_is_no_evidence_and_is_tried_again_a_second_later(how: str) -> None:
    place = Place()
    calls: list[float] = []

    def broken(c) -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            if how == "raises":
                raise RuntimeError("lost connection")
            return UNKNOWN
        return PASSED

    place.health_probe = broken  # type: ignore[method-assign]
    assert _gate(place, 5).ok
    assert len(calls) == 2 and calls[1] - calls[0] >= PROBE_RETRY - 0.05


@pytest.mark.parametrize("config, argv, timeout", [
    ({"Healthcheck": {"Test": ["CMD", "curl", "-f", "http://x/"], "Timeout": 2_000_000_000}},
     ("curl", "-f", "http://x/"), 2.0),
    ({"Healthcheck": {"Test": ["CMD-SHELL", "pg_isready -U \"$USER\""]}},
     ("/bin/sh", "-c", "pg_isready -U \"$USER\""), 30.0),
    ({"Healthcheck": {"Test": ["CMD-SHELL", "exit 0"]}, "Shell": ["/bin/bash", "-o", "pipefail", "-c"]},
     ("/bin/bash", "-o", "pipefail", "-c", "exit 0"), 30.0),
    ({"Healthcheck": {"Test": ["NONE"]}}, (), 30.0),
    ({"Healthcheck": None}, (), 30.0),
    ({}, (), 30.0),
])
def test_the_check_runs_what_the_engine_runs(config: dict, argv: tuple, timeout: float) -> None:
    assert probe_of(config) == (argv, timeout)


def test_the_routers_checks_are_said_in_words() -> None:
    from immutdock.apply.health import check_words

    assert check_words(server("s", "DOWN 1/2", check="L7STS", code=503), "GET /healthz") == \
        "GET /healthz got HTTP 503 (1 of 2 checks in a row passed)"
    assert check_words(server("s", "DOWN", check="L4CON", code=None)) == "the connection is refused"
    assert check_words(server("s", "DOWN", check="L4TOUT", code=None)) == "the connection timed out"


def test_the_gate_has_one_line_per_service() -> None:
    from immutdock.apply.health import gate_lines

    worker = container("app-green-worker-1", status="running", health="starting", service="worker")
    lines = gate_lines([replace(web(), labels={**web().labels, "com.docker.compose.service": "web"}), worker], {"web": "web: 0/1 healthy in the router's check, waiting on web-1: the check "
                                                "got HTTP 503"})
    assert lines == {"web": "web: 0/1 healthy in the router's check, waiting on web-1: the check got HTTP 503",
                     "worker": "worker: 0/1 ready, waiting on app-green-worker-1 (its health check has not passed yet)"}


def test_the_gate_says_each_services_state_as_it_changes_each_line_a_status_of_that_service() -> None:
    from immutdock.progress import topic_of

    said: list[str] = []
    place = Place(result=FAILED)
    place.web = replace(place.web, labels={**place.web.labels, "com.docker.compose.service": "web"})
    gate = wait_ready(place, "app-green", None, "green", [], 0.5, tick=said.append)  # type: ignore[arg-type]
    assert not gate.ok
    assert said == ["health: web: 0/1 ready, waiting on web-1 (its health check has not passed yet)"], said
    assert topic_of(said[0]) == "gate web"
