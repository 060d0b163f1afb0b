"""The step runner (immutdock.apply.steps): steps in order, each timed; on a failure or an interrupt
the steps taken are undone newest first; nothing is undone past the switch."""

from __future__ import annotations

import itertools

import pytest

from immutdock import interrupts
from immutdock.apply.steps import Steps

NAMES = ["shared", "start", "gate", "record", "switch", "drain", "retire"]


class Boom(Exception):
    pass


def _release(fail_at: str | None, log: list[str], timings: dict[str, float] | None = None,
             happened: bool = False) -> Steps:
    """A release of plain functions: each step logs itself; start and record have undos."""
    clock = itertools.count()  # each reading one second later
    steps = Steps(timings if timings is not None else {}, clock=lambda: float(next(clock)))

    def act(name: str):  # noqa: ANN202
        def run() -> str:
            log.append(name)
            if name == fail_at:
                raise KeyboardInterrupt if fail_at == "interrupt-gate" else Boom(f"{name} broke")
            return name
        return run

    with steps:
        for name in NAMES:
            undo = (lambda why, n=name: log.append(f"undo {n}: {why}")) if name in ("start", "record") else None
            failing = "interrupt-gate" if name == "gate" and fail_at == "interrupt-gate" else name
            steps.run(name, act(failing), undo=undo, switches=name == "switch", happened=lambda: happened)
    return steps


@pytest.mark.parametrize("fail_at", NAMES)
def test_a_failure_undoes_the_steps_taken_newest_first_and_nothing_past_the_switch(fail_at: str) -> None:
    log: list[str] = []
    with pytest.raises(Boom):
        _release(fail_at, log)
    taken = NAMES[:NAMES.index(fail_at) + 1]
    assert log[:len(taken)] == taken
    undos = [f"undo {n}: Boom: {fail_at} broke" for n in reversed(taken) if n in ("start", "record")]
    if NAMES.index(fail_at) > NAMES.index("switch"):
        undos = []
    assert log[len(taken):] == undos


def test_a_switch_that_failed_but_happened_is_not_undone() -> None:
    log: list[str] = []
    with pytest.raises(Boom):
        _release("switch", log, happened=True)
    assert not [line for line in log if line.startswith("undo")]
    log.clear()
    with pytest.raises(Boom):
        _release("switch", log, happened=False)
    assert [line for line in log if line.startswith("undo")] == ["undo record: Boom: switch broke",
                                                                    "undo start: Boom: switch broke"]


def test_an_interrupt_undoes_and_goes_on() -> None:
    log: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        _release("interrupt-gate", log)
    assert log == ["shared", "start", "interrupt-gate", "undo start: interrupted"]


def test_every_step_is_timed_and_the_times_add_up() -> None:
    timings: dict[str, float] = {}
    log: list[str] = []
    steps = _release(None, log, timings)
    assert log == NAMES and steps.switched and not steps.undone
    assert timings == {name: 1.0 for name in NAMES}  # one clock reading before, one after each


def test_an_interrupt_during_a_whole_step_waits_for_its_end_then_undoes_it() -> None:
    log: list[str] = []
    steps = Steps({})

    def recreate() -> None:
        interrupts.defer(KeyboardInterrupt())  # what the CLI's handler does while a whole step runs
        log.append("recreated")

    with pytest.raises(KeyboardInterrupt):
        with steps:
            steps.run("stateful", recreate, undo=lambda why: log.append(f"undo: {why}"), whole="the recreate of db")
            log.append("never")
    assert log == ["recreated", "undo: interrupted"]
    assert steps.undone == ["stateful"]


def test_an_undo_that_fails_is_reported_and_the_others_still_run() -> None:
    log: list[str] = []
    reported: list[tuple[str, str]] = []
    steps = Steps({}, on_undo_error=lambda name, exc: reported.append((name, str(exc))))

    def broken(_why: str) -> None:
        raise Boom("cannot remove")

    with pytest.raises(Boom, match="gate"):
        with steps:
            steps.run("start", lambda: None, undo=lambda why: log.append(f"undo start: {why}"))
            steps.run("record", lambda: None, undo=broken)
            steps.run("gate", lambda: (_ for _ in ()).throw(Boom("gate")))
    assert reported == [("record", "cannot remove")]
    assert log == ["undo start: Boom: gate"]
    assert steps.undone == ["record", "start"]


def test_a_step_returns_what_its_action_returns() -> None:
    steps = Steps({})
    with steps:
        assert steps.run("plan", lambda: {"release": "r2"}) == {"release": "r2"}


def test_a_second_interrupt_during_an_undo_waits_for_every_undo() -> None:
    log: list[str] = []
    steps = Steps({})

    def removing(_why: str) -> None:
        interrupts.defer(KeyboardInterrupt())  # Ctrl-C again while the new color is being removed
        log.append("removed")

    with pytest.raises(KeyboardInterrupt):
        with steps:
            steps.run("cleanup", lambda: None, undo=lambda why: log.append(f"recorded: {why}"))
            steps.run("start", lambda: None, undo=removing)
            steps.run("gate", lambda: (_ for _ in ()).throw(Boom("gate")))
    assert log == ["removed", "recorded: Boom: gate"]
    assert steps.undone == ["start", "cleanup"]


def test_steps_run_together_at_once_each_timed_and_returning_in_order() -> None:
    import threading
    import time

    both = threading.Barrier(2, timeout=5)  # passes only while both steps run at the same moment
    timings: dict[str, float] = {}

    def step(name: str):  # noqa: ANN202
        def run() -> str:
            both.wait()
            time.sleep(0.05)
            return name
        return run

    with Steps(timings) as steps:
        assert steps.together(("router", step("router"), None), ("start", step("start"), None)) == ["router", "start"]
    assert set(timings) == {"router", "start"} and all(t >= 0.05 for t in timings.values())


@pytest.mark.parametrize("failing", ["router", "start", "interrupt"])
def test_a_step_run_together_that_fails_waits_for_the_other_then_every_undo_runs(failing: str) -> None:
    import time

    log: list[str] = []

    def step(name: str, slow: bool):  # noqa: ANN202
        def run() -> None:
            if slow:
                time.sleep(0.2)
                log.append(f"{name} done")
            elif failing == "interrupt":
                raise KeyboardInterrupt
            elif name == failing:
                raise Boom(f"{name} broke")
        return run

    expected = KeyboardInterrupt if failing == "interrupt" else Boom
    with pytest.raises(expected):
        with Steps({}) as steps:
            steps.run("shared", lambda: None, undo=lambda why: log.append(f"undo shared: {why}"))
            steps.together(("router", step("router", failing != "router"), lambda why: log.append("undo router")),
                           ("start", step("start", failing == "router"), lambda why: log.append("undo start")))
            steps.run("gate", lambda: log.append("gate"))
    other = "start" if failing == "router" else "router"
    why = "interrupted" if failing == "interrupt" else f"Boom: {failing} broke"
    assert log == [f"{other} done", "undo start", "undo router", f"undo shared: {why}"], log
