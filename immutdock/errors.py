"""The project's own exceptions. Gateways translate engine/CLI failures into these;
only the CLI turns them into messages and exit codes."""

from __future__ import annotations


class ImmutdockError(Exception):
    """Base: a one-line message naming the problem, and a hint naming the fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details  # e.g. last log lines; printed after the message
        self.data: dict[str, object] = {}  # more for --json (a fleet's per-host rows)

    def one_line(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ConfigError(ImmutdockError):
    """Bad input: the compose file, x-immutdock block or command line. Nothing changed."""

    exit_code = 2

    def __init__(self, path: str, message: str, hint: str | None = None) -> None:
        path, message = _printable(path), _printable(message)  # one line, whatever the file holds
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{message}", _printable(hint) if hint else hint)
        self.path = path


def _printable(text: str) -> str:
    """`text` with each character a terminal would not print as it is (a newline, an escape
    sequence) written as its Python escape, e.g. \\n."""
    return text if text.isprintable() else "".join(c if c.isprintable() else c.encode("unicode_escape").decode()
                                                   for c in text)


class EngineError(ImmutdockError):
    """The Docker engine, compose or buildx refused or failed an operation."""

    exit_code = 1


class Unavailable(EngineError):
    """What the file names is not to be had on the target (its address taken by another
    program, an image no registry gives): the file may be right, the target is not ready for it.
    Found before anything changed; `path` names where the file says it."""

    exit_code = 1

    def __init__(self, path: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"{_printable(path)}: {_printable(message)}" if path else _printable(message),
                         _printable(hint) if hint else hint)
        self.path = path


class BuildError(EngineError):
    """An image build failed."""


class ReleaseFailed(ImmutdockError):
    """A release or rollback failed; the previous release is still serving."""

    exit_code = 1


class LockHeld(ImmutdockError):
    """Another release holds the app's lock on the engine."""

    exit_code = 3


class Interrupted(ImmutdockError):
    """Ctrl-C or SIGTERM arrived; what was half made has been undone."""

    exit_code = 130


class AfterSwitch(ImmutdockError):
    """The new release serves, but a step after the switch (draining, retiring the old
    color, recording) failed. The message names the color that serves."""

    exit_code = 4


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so the same undo as Ctrl-C runs (see cli)."""
