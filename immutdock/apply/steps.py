"""The step runner: a release, rollback or heal is a sequence of named steps, each with what
undoes it.

    with Steps(timings) as steps:
        steps.run("start", start, undo=remove_color)
        steps.run("gate", gate)
        steps.run("switch", switch, switches=True, whole="the switch to green")
        steps.run("drain", drain)

- Each step's duration is added to `timings` under its name, failed or not, so `--json`
  reports where the time went; the durations add up to the run's whole time, but for steps
  run together.
- An undo is taken on when its step starts: a step that fails halfway is undone too, so an
  undo must be safe whatever part of its step ran.
- When a step fails, or an interrupt (Ctrl-C, SIGTERM) arrives, the undos run newest first,
  all of them whole (a second interrupt waits for the last one), and the error goes on to
  the caller. An undo
  that fails is reported (`on_undo_error`) and the others still run.
- Past the switch nothing is undone: once the step that `switches` has run, the new version
  serves, and the caller says so. A switch that fails may still have happened; its
  `happened` says whether it did.
- A `whole` step runs to its end when an interrupt arrives meanwhile (the stateful recreate,
  the switch, an undo), as `immutdock.interrupts.whole`.
- Independent steps run at once with `together` (the router's preparation beside the start of
  the new color): each in a thread, timed under its own name (their durations overlap), each
  undo taken on as they start. The runner waits for all of them; an interrupt stops each at its
  next checkpoint (`immutdock.interrupts.in_threads`); then the first failure goes on and every
  undo runs.

The runner knows nothing of engines: the unit tests drive it with plain functions."""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import Any, Callable, TypeVar

from immutdock import interrupts

T = TypeVar("T")
Undo = Callable[[str], None]  # given why: "interrupted", or what failed


def why_failed(exc: BaseException) -> str:
    """What an error says, as an undo is told it (its `undo_reason`, when it has one)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    message = getattr(exc, "undo_reason", None) or getattr(exc, "message", None)
    return str(message) if message else f"{type(exc).__name__}: {exc}"


class Steps:
    def __init__(self, timings: dict[str, float], on_undo_error: Callable[[str, BaseException], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timings = timings
        self.on_undo_error = on_undo_error
        self.clock = clock
        self.switched = False
        self.undone: list[str] = []  # the names of the steps undone, in the order they were
        self.undo_errors: list[str] = []  # the names of those whose undo failed
        self._undos: list[tuple[str, Undo]] = []

    def run(self, name: str, action: Callable[[], T], *, undo: Undo | None = None, whole: str = "",
            switches: bool = False, happened: Callable[[], bool] | None = None) -> T:
        """Run one step and return what it returns."""
        interrupts.checkpoint()
        if undo is not None:
            self._undos.append((name, undo))
        started = self.clock()
        completed = False
        try:
            with interrupts.whole(whole) if whole else contextlib.nullcontext():
                result = action()
                completed = True  # an interrupt that waited for it is raised after this
        except BaseException:
            if switches and (completed or (happened is not None and _quietly(happened))):
                self.switched = True
            raise
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + self.clock() - started
        if switches:
            self.switched = True
        return result

    def together(self, *steps: tuple[str, Callable[[], Any], Undo | None]) -> list[Any]:
        """Run independent steps (name, action, undo) at once; what each returned, in order."""
        interrupts.checkpoint()
        for name, _action, undo in steps:
            if undo is not None:
                self._undos.append((name, undo))

        def one(step: tuple[str, Callable[[], Any], Undo | None]) -> Any:
            name, action, _undo = step
            started = self.clock()
            try:
                return action()
            finally:
                self.timings[name] = self.timings.get(name, 0.0) + self.clock() - started

        return interrupts.in_threads(one, list(steps), workers=len(steps))

    def __enter__(self) -> "Steps":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 _tb: TracebackType | None) -> bool:
        if exc is not None and not self.switched:
            self.undo(why_failed(exc))
        return False  # the error goes on

    def undo(self, why: str) -> None:
        """Undo the steps taken so far, newest first, all of them whole: an interrupt that
        arrives meanwhile is raised once the last one has run."""
        with interrupts.whole("the undo"):
            while self._undos:
                name, fn = self._undos.pop()
                started = self.clock()
                try:
                    with interrupts.whole(f"the undo of {name}"):
                        fn(why)
                except Exception as exc:  # noqa: BLE001 - the other undos still run; the caller is told
                    self.undo_errors.append(name)
                    if self.on_undo_error is None:
                        raise
                    self.on_undo_error(name, exc)
                finally:
                    self.timings["undo"] = self.timings.get("undo", 0.0) + self.clock() - started
                self.undone.append(name)


def _quietly(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except Exception:  # noqa: BLE001 - a check that cannot tell counts as "it did not happen"
        return False
