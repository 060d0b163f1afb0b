"""An interrupt during a step that must finish is raised when the step has finished; a
Ctrl-C while hosts are released in threads stops each of them once, at its next checkpoint."""

from __future__ import annotations

import _thread
import signal
import threading
import time
from typing import Iterator

import pytest

from immutdock import interrupts
from immutdock.errors import Terminated


def test_outside_a_step_nothing_is_deferred() -> None:
    assert interrupts.section() is None


def test_an_interrupt_during_a_step_is_raised_after_it() -> None:
    done = []
    with pytest.raises(Terminated):
        with interrupts.whole("the recreate of db"):
            assert interrupts.section() == "the recreate of db"
            interrupts.defer(Terminated())
            done.append("rest of the step")
    assert done == ["rest of the step"]
    assert interrupts.section() is None


def test_nested_steps_raise_once_at_the_outermost_end() -> None:
    order = []
    with pytest.raises(KeyboardInterrupt) as raised:
        with interrupts.whole("outer"):
            with interrupts.whole("inner"):
                interrupts.defer(KeyboardInterrupt())
                interrupts.defer(Terminated())  # the first one wins
            order.append("after inner")
    assert order == ["after inner"] and raised.type is KeyboardInterrupt


def test_a_step_that_fails_raises_its_own_error_and_drops_the_interrupt() -> None:
    with pytest.raises(ValueError):
        with interrupts.whole("undo"):
            interrupts.defer(KeyboardInterrupt())
            raise ValueError("engine said no")
    with interrupts.whole("next step"):  # nothing left over from before
        pass


def test_a_step_without_interrupt_raises_nothing() -> None:
    with interrupts.whole("step"):
        pass


def _host(log: list[str], name: str, started: threading.Barrier | None = None, steps: int = 500) -> str:
    """A stand-in for one host's release: steps with checkpoints, an undo when interrupted
    (checkpoints in it, a whole step, a helper thread), and nothing after."""
    try:
        if started is not None:
            started.wait(5)
        for _ in range(steps):  # 10 ms each: 5 s unless stopped
            interrupts.checkpoint()
            time.sleep(0.01)
        log.append(f"{name} finished")
        return name
    except KeyboardInterrupt:
        log.append(f"{name} stopped")
        interrupts.checkpoint()  # told once: the undo is not cut
        with interrupts.whole("removing the color"):
            interrupts.checkpoint()
        helper = threading.Thread(target=interrupts.checkpoint)  # a thread the step starts: never stopped
        helper.start()
        helper.join()
        log.append(f"{name} undone")
        raise


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as in a command started in the foreground. A process a
    script starts in the background (`cmd &`) inherits SIGINT ignored, and interrupt_main then does
    nothing at all."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_stops_every_thread_once_and_is_raised_when_all_have_undone(sigint_raises: None) -> None:
    log: list[str] = []
    started = threading.Barrier(3)

    def ctrl_c() -> None:
        started.wait(5)
        time.sleep(0.1)
        _thread.interrupt_main()  # what SIGINT does: KeyboardInterrupt in the main thread

    threading.Thread(target=ctrl_c).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        interrupts.in_threads(lambda n: _host(log, n, started), ["a", "b"])
    assert time.monotonic() - t0 < 3, "the threads stopped at their next checkpoint"
    assert sorted(log) == ["a stopped", "a undone", "b stopped", "b undone"]


def test_threads_not_asked_to_stop_run_to_their_end_and_keep_their_order() -> None:
    log: list[str] = []
    assert interrupts.in_threads(lambda n: n.upper(), ["a", "b", "c"]) == ["A", "B", "C"]
    interrupts.stop_threads()  # an earlier stop does not reach threads started after it
    assert interrupts.in_threads(lambda n: _host(log, n, steps=20) if n == "a" else n, ["a"]) == ["a"]
    assert log == ["a finished"]


def test_the_main_thread_never_stops_at_a_checkpoint() -> None:
    interrupts.stop_threads()
    interrupts.checkpoint()


def test_the_first_failure_in_the_items_order_is_raised() -> None:
    def fail(n: int) -> int:
        if n:
            raise ValueError(f"host {n}")
        return n

    with pytest.raises(ValueError, match="host 1"):
        interrupts.in_threads(fail, [0, 1, 2])
