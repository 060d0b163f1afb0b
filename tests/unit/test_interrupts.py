"""An interrupt during a step that must finish is raised when the step has finished."""

from __future__ import annotations

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
