"""Steps an interrupt must not cut in half: a stateful service being recreated, an undo.

The CLI's signal handlers (the only place signals are handled) ask `section()`: while one runs
they `defer` the interrupt instead of raising it, and the step raises it when it has finished.
Child processes started by such a step run in their own session (`Compose.up(..., whole=True)`),
so a Ctrl-C typed at the terminal reaches immutdock only, never the compose it waits for."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

_sections: list[str] = []
_pending: list[BaseException] = []


@contextmanager
def whole(what: str) -> Iterator[None]:
    """Run a step to its end; an interrupt that came meanwhile is raised once it has finished.
    When the step itself fails, its own error unwinds and the interrupt is dropped with it."""
    _sections.append(what)
    ok = False
    try:
        yield
        ok = True
    finally:
        _sections.pop()
        if not _sections:
            pending = _pending[:1]
            _pending.clear()
            if ok and pending:
                raise pending[0]


def section() -> str | None:
    """The step being finished, if any (what the CLI tells the user it waits for)."""
    return _sections[-1] if _sections else None


def defer(exc: BaseException) -> None:
    """Keep an interrupt for the end of the current step (the first one wins)."""
    _pending.append(exc)
