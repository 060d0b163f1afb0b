"""Steps an interrupt must not cut in half: a stateful service being recreated, an undo; and
how an interrupt reaches the threads that release several hosts side by side.

The CLI's signal handlers (the only place signals are handled) ask `section()`: while one runs
they `defer` the interrupt instead of raising it, and the step raises it when it has finished.
Child processes started by such a step run in their own session (`Compose.up`), so a Ctrl-C
typed at the terminal reaches immutdock only, never the compose it waits for; the compose of a
stateful recreate even outlives immutdock's death (`Compose.up(..., surviving=True)`).

Signals reach only the main thread. While hosts are released side by side (`in_threads`), the
main thread catches the interrupt and calls `stop_threads()`: each of those threads gets one
KeyboardInterrupt at its next `checkpoint()` (every engine request and compose wait has one)
outside a whole step, and unwinds through the same undo as on the main thread. Sections are
kept per thread."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_local = threading.local()
_stopping = [0]  # a generation: stop_threads() makes a new one; each thread is told once per generation


def _sections() -> list[str]:
    if not hasattr(_local, "sections"):
        _local.sections, _local.pending, _local.told = [], [], 0
    return _local.sections  # type: ignore[no-any-return]


@contextmanager
def whole(what: str) -> Iterator[None]:
    """Run a step to its end; an interrupt that came meanwhile is raised once it has finished.
    When the step itself fails, its own error unwinds and the interrupt is dropped with it."""
    sections = _sections()
    sections.append(what)
    ok = False
    try:
        yield
        ok = True
    finally:
        sections.pop()
        if not sections:
            pending = _local.pending[:1]
            _local.pending.clear()
            if ok and pending:
                raise pending[0]
    checkpoint()


def section() -> str | None:
    """The step being finished, if any (what the CLI tells the user it waits for)."""
    sections = _sections()
    return sections[-1] if sections else None


def defer(exc: BaseException) -> None:
    """Keep an interrupt for the end of the current step (the first one wins)."""
    _sections()
    _local.pending.append(exc)


def stop_threads() -> None:
    """Ask the threads of `in_threads` to stop at their next checkpoint."""
    _stopping[0] += 1


def checkpoint() -> None:
    """In a thread of `in_threads` asked to stop: KeyboardInterrupt (once), unless a whole
    step runs. Other threads (the main one, helpers a step starts) never stop here."""
    if not _stopping[0] or not getattr(_local, "stoppable", False):
        return
    if _sections() or _local.told >= _stopping[0]:
        return
    _local.told = _stopping[0]
    raise KeyboardInterrupt()


def in_threads(fn: Callable[[T], R], items: Sequence[T], workers: int = 8) -> list[R]:
    """fn(item) for every item, in threads; the results in the items' order (the first
    failure, in that order, is raised). A Ctrl-C meanwhile stops every thread at its next
    checkpoint and is raised once all have ended (they undo what they half made)."""
    def stoppable(item: T) -> R:
        _sections()
        _local.stoppable, _local.told = True, _stopping[0]
        try:
            return fn(item)
        finally:
            _local.stoppable = False

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        futures = [pool.submit(stoppable, item) for item in items]
        try:
            while wait(futures, timeout=0.2).not_done:
                pass
        except KeyboardInterrupt:
            stop_threads()
            while True:
                try:
                    wait(futures)
                    break
                except KeyboardInterrupt:  # again: the threads are undoing; wait for them all the same
                    continue
            raise
    return [f.result() for f in futures]
