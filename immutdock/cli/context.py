"""What every command shares: its options (`common`), its context (`Ctx`: progress on
stderr, the app, the places it runs on, its output), and how an error becomes a message and
an exit code (signals.py: the signals that stop it; live.py: the live region).

Exit codes: 0 success (or nothing to do), 1 the operation failed and the previous release
is still serving, 2 bad input and nothing changed, 3 another release holds the lock."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, TypeVar

import click

from immutdock.cli import signals
from immutdock.errors import ConfigError, ImmutdockError

if TYPE_CHECKING:
    from concurrent.futures import Future

    from immutdock.apply.fleet import Fleet
    from immutdock.config.model import App
    from immutdock.config.model import Target as Policy
    from immutdock.gateways.engine import Engine
    from immutdock.targets.base import Target

F = TypeVar("F", bound=Callable[..., Any])
_STEP = re.compile(r"#\d+ (\[|ERROR|CACHED)")

EPILOG = """\b
Exit codes: 0 ok, 1 failed (the previous release still serves), 2 bad input
(nothing changed), 3 another release holds the lock, 4 the new release serves
but a step after the switch failed, 130 interrupted (Ctrl-C or SIGTERM)."""


def exits(*codes: str) -> str:
    """A command's epilog: the exit codes it gives ("N what"), with those every command gives,
    in order; a command's own "2 ..." says more of bad input."""
    said: dict[str, list[str]] = {"2": ["bad input (nothing changed)"], "130": ["interrupted (Ctrl-C or SIGTERM)"]}
    for code in codes:
        number, _, what = code.partition(" ")
        said.setdefault(number, []).append(what)
    order = sorted(said, key=lambda n: int(n) if n.isdecimal() else -1)
    return "\b\nExit codes:\n" + "\n".join(f"  {n:<3} {'; '.join(said[n])}" for n in order)


RELEASE_EXITS = exits("0 ok, or nothing to do", "1 failed: the previous release still serves",
                      "3 another release holds the lock", "4 the new release serves, but a step after the switch failed")
ENGINE = "the engine (or a host) cannot be asked"


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """`rows` (the first the header) as lines of aligned columns; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    return [("  ".join(f"{str(c):<{w}}" for c, w in zip(r, widths)) + "  " + str(r[-1])).rstrip() for r in rows]


def paint(text: str, color: str) -> str:
    """`text` in `color` on a terminal (click leaves the colour out elsewhere), plain when
    NO_COLOR is set to anything but "" (no-color.org) or the command was given --no-color."""
    return text if os.environ.get("NO_COLOR") else click.style(text, fg=color)


PLACES = ("immutdock.apply.fleet", "immutdock.targets.hosts")  # what `Ctx.places` opens: `load` imports them ahead


class Ctx:
    def __init__(self, file: Path | None, as_json: bool, verbose: bool, target: str | None = None,
                 hosts: tuple[str, ...] = (), identity: Path | None = None, accept_new: bool = False) -> None:
        self.file = file
        self.as_json = as_json
        self.verbose = verbose
        self.target_name = target
        self.hosts = hosts
        self.identity = identity
        self.accept_new = accept_new
        self.started = time.monotonic()
        self._ahead: tuple[str, Future[Any]] | None = None  # (app name, what `load` prefetched for it)
        self._view: Any = None  # cli.live's LiveView (on a terminal) or Bars, made on first use
        self._view_lock = threading.Lock()  # hosts in parallel each say their own progress

    def _live(self) -> bool:
        """Whether progress is a live region: stderr is a terminal, and no --json."""
        return not self.as_json and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"

    def _made(self, kind: str) -> Any:
        from rich.console import Console

        from immutdock.cli import live

        with self._view_lock:
            if self._view is None:
                self._view = (live.LiveView if kind == "live" else live.Bars)(Console(stderr=True))
            return self._view

    def say(self, message: str) -> None:
        """Progress, on stderr (stdout carries only the result, e.g. the JSON): a line, or on a
        terminal the new state of a row of the live region (a Status message)."""
        from immutdock.cli.live import LiveView
        from immutdock.progress import topic_of

        line = f"[{time.monotonic() - self.started:6.1f}s] {message}"
        topic = topic_of(message)
        if topic is not None and self._live():
            self._made("live").status(topic, message)
            if not self.verbose:
                return
        if getattr(message, "quiet", False):
            return  # a countdown: only a live region shows it
        view = self._view
        if isinstance(view, LiveView):
            view.line(line)
        else:
            click.echo(line, err=True)

    def progress(self, line: str) -> None:
        """Progress with BuildKit's output cut to its step headers, unless --verbose (a live
        region takes it all: an image's row shows its step's latest output)."""
        from immutdock.progress import topic_of

        if topic_of(line) is not None and self._live():
            self.say(line)
            return
        _service, sep, rest = line.partition(": ")
        build_noise = sep and (not rest.strip() or (rest.startswith("#") and not _STEP.match(rest)))
        if self.verbose or not build_noise:
            self.say(line)

    def warn(self, message: str) -> None:
        from immutdock.cli.live import LiveView

        view = self._view
        if isinstance(view, LiveView):
            view.line(paint(f"warning: {message}", "yellow"))
        else:
            click.echo(paint(f"warning: {message}", "yellow"), err=True)

    @functools.cached_property
    def engine(self) -> Engine:  # made without a request
        from immutdock.gateways.engine import Engine

        return Engine()

    def load(self, prefetch: Callable[[Any, str], Any] | None = None, warn: bool = False,
             ahead: Sequence[str] = PLACES) -> App:
        """The app, from its compose file. While compose reads it: prefetch(engine, name) runs in
        the background (`prefetched` hands its result over; not for SSH hosts: the local engine is
        not theirs), and the redactor and the modules `ahead` are imported (the package has no
        import cycle, which two threads importing at once would fail on). With `warn`, what the
        release leaves out of the file is warned."""
        from immutdock.config import compose_file as config

        def named(name: str | None) -> None:
            if name is not None and prefetch is not None and not self.target_name and not self.hosts:
                self._ahead = (name, _background(prefetch, self.engine, name))
            for module in ("immutdock.identity.redact", *ahead):
                importlib.import_module(module)

        app = config.load(Path.cwd(), self.file, named=named)
        from immutdock.identity.redact import hidden_values

        app = dataclasses.replace(app, secret_values=hidden_values(app))  # no record or file keeps one
        for warning in app.warnings if warn else ():
            self.warn(warning)
        return app

    def prefetched(self, app: App, fetch: Callable[[Any, str], Any], where: Target) -> Any:
        """What `load`'s prefetch read (fetch(the local engine, name)), when it read this app (the
        name held) on the local engine; else fetch(where, app name) now, through the Target."""
        if self._ahead is not None and self._ahead[0] == app.name and where.engine is self.engine:
            return self._ahead[1].result()
        return fetch(where, app.name)

    def policy(self, app: App) -> Policy | None:
        """The target the command names (None: the local engine)."""
        from immutdock.targets.hosts import resolve

        return resolve(app, self.target_name, self.hosts)

    @contextlib.contextmanager
    def places(self, app: App) -> Iterator[Fleet]:
        """The command's places as a Fleet, open meanwhile: the local engine (a list of one),
        or the hosts of the target the command names (connected over SSH)."""
        from immutdock.apply.fleet import Fleet
        from immutdock.targets.hosts import local, reaching, refuse_unready, session

        policy = self.policy(app)
        if policy is None:
            opened = contextlib.nullcontext([local(self.engine, app.secret_values)])
        else:
            command = _command_words()
            refuse_unready(policy, command)
            self.say(f"connecting to {reaching(policy)}")
            opened = session(policy, self.identity, self.accept_new, app.secret_values, lambda: self.engine,
                             self.warn, command)
        with opened as targets:
            try:
                yield Fleet(app, policy, targets, self.engine, self.progress, self.warn, self.shipping)
            finally:
                for t in targets if policy is None else ():
                    t.close()
                self.stop_bars()

    def emit_each(self, fleet: Fleet, found: Sequence[Any], flat: Callable[[Any], Any],
                  lines: Callable[[Any], list[str]], row: Callable[[Any], Mapping[str, Any]] | None = None,
                  before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None) -> None:
        """A command's result on each of its places, in the one shape a command's output
        takes: on the local engine, `flat` of its result (and its `lines`); on a target,
        {**before, "target", **after, "hosts": one row per host ({"host", **row})}, each line
        prefixed with the host's name."""
        if fleet.policy is None:
            self.emit(flat(found[0]), lambda: [click.echo(line) for line in lines(found[0])])
            return
        rows = [{"host": t.name, **(row or flat)(x)} for t, x in zip(fleet.targets, found)]
        self.emit({**(before or {}), "target": fleet.name, **(after or {}), "hosts": rows},
                  lambda: [click.echo(f"{t.name}  {line}") for t, x in zip(fleet.targets, found) for line in lines(x)])

    def shipping(self, what: str, sent: int, read: int, total: int) -> None:
        """A progress bar per transfer while images move to hosts (rich, on stderr)."""
        from immutdock.targets.ship import size_text

        self.bar(what, read, total, f"{size_text(sent)} sent" if sent >= 0 else "")

    def bar(self, what: str, done: int, total: int, note: str = "") -> None:
        """A progress bar per `what`, in bytes (on stderr: in the live region on a terminal;
        not with --json unless stderr is a terminal). `stop_bars` ends them."""
        if self.as_json and not sys.stderr.isatty():
            return
        self._made("live" if self._live() else "bars").bar(what, done, total, note)

    def stop_bars(self) -> None:
        """The live region or the bars stopped, what they show left on the terminal."""
        with self._view_lock:
            view, self._view = self._view, None
        if view is not None:
            view.stop()

    def emit(self, data: Any, human: Callable[[], None]) -> None:
        self.stop_bars()  # the result comes after what the region shows, never under it
        if self.as_json:
            click.echo(json.dumps(data, indent=2, default=str))
        else:
            human()


def _background(fn: Callable[..., Any], *args: Any) -> "Future[Any]":
    """fn(*args) in a daemon thread: a command that fails first never waits for it."""
    import threading
    from concurrent.futures import Future

    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever takes the result
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future


# The options `common` gives every command, by their names on the command line (flags; options
# with a value -> their long name): `immutdock OPTIONS COMMAND` moves them after the command.
COMMON_FLAGS = {"--json", "-v", "--verbose", "--accept-new-host-key", "--no-color"}
COMMON_VALUED = {"-f": "--file", "--file": "--file", "--profile": "--profile", "--target": "--target",
                 "--host": "--host", "--identity": "--identity", "-p": "--project-name",
                 "--project-name": "--project-name"}


def common(fn: F) -> F:
    """-f/--file, --json, --verbose and --profile on every command; errors become messages and exit codes."""
    return _common(fn, ("-f", "--file"))


def common_long_file(fn: F) -> F:
    """`common` for a command whose -f is its own (logs -f follows, as compose's): --file only."""
    return _common(fn, ("--file",))


def common_here(fn: F) -> F:
    """`common` for a command that works on this machine only (build, init): no SSH options."""
    return _common(fn, ("-f", "--file"), places=False)


def _places(fn: F) -> F:
    """The options that name where a command runs: a target of the file's, or hosts over SSH."""
    for option in reversed((
            click.option("--target", "target", metavar="NAME", default=None,
                         help="Run on the hosts of x-immutdock.targets.NAME over SSH (default: the local engine, "
                              "or DOCKER_HOST)."),
            click.option("--host", "hosts", multiple=True, metavar="ssh://USER@HOST[:PORT]",
                         help="Run on this host over SSH, a one-off target (repeatable; a ~/.ssh/config alias "
                              "works)."),
            click.option("--identity", type=click.Path(path_type=Path), default=None, metavar="FILE",
                         help="SSH private key to log in with (besides ~/.ssh/config's IdentityFile and the agent)."),
            click.option("--accept-new-host-key", "accept_new", is_flag=True,
                         help="Record the key of a host not yet in known_hosts (a changed key is always refused).")
    )):
        fn = option(fn)
    return fn


def _common(fn: F, file_flags: tuple[str, ...], places: bool = True) -> F:
    @click.option(*file_flags, "file", type=click.Path(path_type=Path), default=None,
                  help="Compose file (default: compose.yaml, compose.yml, docker-compose.yaml or "
                       "docker-compose.yml in the current folder).")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (for CI).")
    @click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and full build output.")
    @click.option("--profile", "profiles", multiple=True, metavar="NAME",
                  help="Activate a compose profile (repeatable; as compose's --profile or COMPOSE_PROFILES). "
                       "A release records its profiles; a rollback runs the recorded release's services.")
    @(_places if places else lambda f: f)
    @click.option("--no-color", "no_color", is_flag=True, help="No colours in what is printed (as NO_COLOR=1 does).")
    @click.option("-p", "--project-name", "project", metavar="NAME", default=None,
                  help="The app's name, over the file's `name:` (as compose's -p or COMPOSE_PROJECT_NAME).")
    @functools.wraps(fn)
    def wrapper(file: Path | None, as_json: bool, verbose: bool, profiles: tuple[str, ...], no_color: bool,
                project: str | None, target: str | None = None, hosts: tuple[str, ...] = (),
                identity: Path | None = None, accept_new: bool = False, **kwargs: Any) -> None:
        if no_color:
            os.environ["NO_COLOR"] = "1"  # rich reads it too
        if project is not None:
            os.environ["COMPOSE_PROJECT_NAME"] = project  # what compose and the file's reading go by
        if profiles:
            os.environ["COMPOSE_PROFILES"] = ",".join(profiles)
        ctx = Ctx(file, as_json, verbose, target, hosts, identity, accept_new)
        previous = signal.signal(signal.SIGTERM, signals.on_sigterm)
        previous_int = signal.signal(signal.SIGINT, signals.on_sigint)
        try:
            fn(ctx, **kwargs)
        except ImmutdockError as exc:
            ctx.stop_bars()
            if verbose:
                traceback.print_exc()
            fail(ctx, exc)
        except KeyboardInterrupt:
            ctx.stop_bars()
            fail(ctx, ImmutdockError("interrupted", None), code=130)
        finally:
            ctx.stop_bars()
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)

    return wrapper  # type: ignore[return-value]


def fail(ctx: Ctx, exc: ImmutdockError, code: int | None = None) -> None:
    code = exc.exit_code if code is None else code
    if ctx.as_json:
        click.echo(json.dumps({"outcome": "error", "exit_code": code, "error": exc.message, "hint": exc.hint,
                               "details": exc.details, **exc.data}, indent=2, default=str))
    click.echo(paint(f"error: {exc.one_line()}", "red"), err=True)
    if exc.details:
        click.echo(exc.details.rstrip(), err=True)
    sys.exit(code)


def host_folder(folder: Path, host: str | None) -> Path:
    """A host's folder in `folder` (backups, release archives): its name without ssh://, safe as
    one path segment; `folder` itself for the local engine (None)."""
    return folder / re.sub(r"[^A-Za-z0-9@._-]", "_", host.removeprefix("ssh://")) if host else folder


def place_folder(fleet: Fleet, folder: Path, target: Target) -> Path:
    """`target`'s folder in `folder`: `folder` itself when the command runs on the local engine."""
    return host_folder(folder, None if fleet.policy is None else target.name)


def writable(folder: Path, option: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(option, f"cannot make the folder {folder}: {exc.strerror or exc}",
                          f"name a folder you can write with {option}") from None
    if not os.access(folder, os.W_OK):
        raise ConfigError(option, f"cannot write into {folder}", f"name a folder you can write with {option}")


def _command_words() -> str:
    """The command that runs, as typed after the program's name ("release", "volumes ls")."""
    words: list[str] = []
    current: click.Context | None = click.get_current_context()
    while current is not None and current.parent is not None:
        words.append(current.info_name or "")
        current = current.parent
    return " ".join(reversed(words))
