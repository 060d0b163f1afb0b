"""The `immutdock` command. The only module that prints or chooses an exit code.

Exit codes: 0 success (or nothing to do), 1 the operation failed and the previous release
is still serving, 2 bad input and nothing changed, 3 another release holds the lock."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, TypeVar

import click

from immutdock import __version__
from immutdock.errors import ConfigError, ImmutdockError, Terminated

if TYPE_CHECKING:
    from concurrent.futures import Future

F = TypeVar("F", bound=Callable[..., Any])
_STEP = re.compile(r"#\d+ (\[|ERROR|CACHED)")

EPILOG = """\b
Exit codes: 0 ok, 1 failed (the previous release still serves), 2 bad input
(nothing changed), 3 another release holds the lock, 4 the new release serves
but a step after the switch failed, 130 interrupted (Ctrl-C or SIGTERM)."""


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
        self._bars: Any = None  # rich progress bars of image shipping, made on first use
        self._bars_lock = threading.Lock()  # hosts in parallel each move their own bar

    def say(self, message: str) -> None:
        """Progress, on stderr (stdout carries only the result, e.g. the JSON)."""
        click.echo(f"[{time.monotonic() - self.started:6.1f}s] {message}", err=True)

    def progress(self, line: str) -> None:
        """Progress with BuildKit's output cut to its step headers, unless --verbose."""
        _service, sep, rest = line.partition(": ")
        build_noise = sep and (not rest.strip() or (rest.startswith("#") and not _STEP.match(rest)))
        if self.verbose or not build_noise:
            self.say(line)

    def warn(self, message: str) -> None:
        click.echo(click.style(f"warning: {message}", fg="yellow"), err=True)

    @functools.cached_property
    def engine(self):  # -> Engine (made without a request)
        from immutdock.gateways.engine import Engine

        return Engine()

    def load(self, prefetch: Callable[[Any, str], Any] | None = None, warn: bool = False):  # -> App
        """The app, from its compose file. With `prefetch`, prefetch(engine, name) runs in the
        background while compose reads the file (the engine's reads overlap compose's start-up),
        for the name the file gives; `prefetched` hands its result over (not for a command on
        SSH hosts: the local engine is not theirs). With `warn`, what the release leaves out of
        the file is warned."""
        from immutdock.config import compose_file as config

        def named(name: str) -> None:
            if prefetch is not None and not self.target_name and not self.hosts:
                self._ahead = (name, _background(prefetch, self.engine, name))

        from immutdock.identity.redact import hidden_values

        app = config.load(Path.cwd(), self.file, named=named)
        app = dataclasses.replace(app, secret_values=hidden_values(app))  # no record or file keeps one
        for warning in app.warnings if warn else ():
            self.warn(warning)
        return app

    def prefetched(self, app, fetch: Callable[[Any, str], Any]) -> Any:
        """What `load`'s prefetch read, when it read this app (the name held); else fetch now."""
        if self._ahead is not None and self._ahead[0] == app.name:
            return self._ahead[1].result()
        return fetch(self.engine, app.name)

    def deployer(self, app):  # -> Deployer
        from immutdock.gateways.compose import Compose
        from immutdock.apply.release import Deployer
        from immutdock.targets.engine import EngineRuntime, engine_target

        runtime = EngineRuntime("local", self.engine, Compose(hidden=app.secret_values))
        return Deployer(app, engine_target(runtime), self.progress, self.warn)

    def target(self, app: Any) -> Any:  # -> Target | None (None: the local engine)
        from immutdock.apply.fleet import resolve

        return resolve(app, self.target_name, self.hosts)

    @contextlib.contextmanager
    def fleet(self, app: Any, target: Any) -> Iterator[Any]:  # -> Fleet, its hosts open meanwhile
        from immutdock.apply.fleet import Fleet, session

        self.say(f"connecting to {', '.join(target.hosts)}")
        with session(target, self.identity, self.accept_new, app.secret_values) as hosts:
            try:
                yield Fleet(app, target, hosts, self.engine, self.progress, self.warn, self.shipping)
            finally:
                self.stop_bars()

    def shipping(self, what: str, sent: int, read: int, total: int) -> None:
        """A progress bar per transfer while images move to hosts (rich, on stderr)."""
        from immutdock.apply.fleet import size_text

        self.bar(what, read, total, f"{size_text(sent)} sent" if sent >= 0 else "")

    def bar(self, what: str, done: int, total: int, note: str = "") -> None:
        """A progress bar per `what`, in bytes (rich, on stderr; not with --json unless stderr
        is a terminal). `stop_bars` ends them."""
        if self.as_json and not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        with self._bars_lock:
            if self._bars is None:
                bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                TextColumn("{task.fields[sent]}"), console=Console(stderr=True), transient=False)
                bars.start()
                self._bars = (bars, {})
            bars, tasks = self._bars
            if what not in tasks:
                tasks[what] = bars.add_task(what, total=total, sent="")
        bars.update(tasks[what], completed=done, total=total or None, sent=note)

    def stop_bars(self) -> None:
        if self._bars is not None:
            self._bars[0].stop()
            self._bars = None

    def emit(self, data: Any, human: Callable[[], None]) -> None:
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


def common(fn: F) -> F:
    """-f/--file, --json, --verbose and --profile on every command; errors become messages and exit codes."""

    @click.option("-f", "--file", "file", type=click.Path(path_type=Path), default=None,
                  help="Compose file (default: compose.yaml, compose.yml, docker-compose.yaml or "
                       "docker-compose.yml in the current folder).")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (for CI).")
    @click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and full build output.")
    @click.option("--profile", "profiles", multiple=True, metavar="NAME",
                  help="Activate a compose profile (repeatable; as compose's --profile or COMPOSE_PROFILES). "
                       "A release records its profiles; a rollback runs the recorded release's services.")
    @click.option("--target", "target", metavar="NAME", default=None,
                  help="Run on the hosts of x-immutdock.targets.NAME over SSH (default: the local engine, or "
                       "DOCKER_HOST).")
    @click.option("--host", "hosts", multiple=True, metavar="ssh://USER@HOST[:PORT]",
                  help="Run on this host over SSH, a one-off target (repeatable; a ~/.ssh/config alias works).")
    @click.option("--identity", type=click.Path(path_type=Path), default=None, metavar="FILE",
                  help="SSH private key to log in with (besides ~/.ssh/config's IdentityFile and the agent).")
    @click.option("--accept-new-host-key", "accept_new", is_flag=True,
                  help="Record the key of a host not yet in known_hosts (a changed key is always refused).")
    @functools.wraps(fn)
    def wrapper(file: Path | None, as_json: bool, verbose: bool, profiles: tuple[str, ...], target: str | None,
                hosts: tuple[str, ...], identity: Path | None, accept_new: bool, **kwargs: Any) -> None:
        if profiles:
            os.environ["COMPOSE_PROFILES"] = ",".join(profiles)
        ctx = Ctx(file, as_json, verbose, target, hosts, identity, accept_new)
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        previous_int = signal.signal(signal.SIGINT, _on_sigint)
        try:
            fn(ctx, **kwargs)
        except ImmutdockError as exc:
            if verbose:
                traceback.print_exc()
            _fail(ctx, exc)
        except KeyboardInterrupt:
            _fail(ctx, ImmutdockError("interrupted", None), code=130)
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)

    return wrapper  # type: ignore[return-value]


def _on_sigterm(_sig: int, _frame: Any) -> None:
    """SIGTERM works like Ctrl-C: child processes (buildx, compose) are stopped, and the
    command unwinds through the same undo, lock release and record as an interrupt; a step
    that must not be cut in half (a stateful recreate, an undo) finishes first."""
    if _deferred(Terminated()):
        return
    _stop_children()
    raise Terminated()


def _on_sigint(_sig: int, _frame: Any) -> None:
    if not _deferred(KeyboardInterrupt()):
        raise KeyboardInterrupt()


def _deferred(exc: KeyboardInterrupt) -> bool:
    from immutdock import interrupts

    what = interrupts.section()
    if what is None:
        return False
    interrupts.defer(exc)
    click.echo(click.style(f"interrupt: finishing {what} first, then stopping", fg="yellow"), err=True)
    return True


def _stop_children(grace: float = 5.0) -> None:
    """SIGTERM to every child process (buildx, compose), then wait until each has exited, so
    none outlives the command; one still running after `grace` seconds gets SIGKILL."""
    from immutdock.gateways.procs import children, running

    pids = children(os.getpid())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            continue
    deadline = time.monotonic() + grace
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if running(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue


def _fail(ctx: Ctx, exc: ImmutdockError, code: int | None = None) -> None:
    code = exc.exit_code if code is None else code
    if ctx.as_json:
        click.echo(json.dumps({"outcome": "error", "exit_code": code, "error": exc.message, "hint": exc.hint,
                               "details": exc.details, **exc.data}, indent=2, default=str))
    click.echo(click.style(f"error: {exc.one_line()}", fg="red"), err=True)
    if exc.details:
        click.echo(exc.details.rstrip(), err=True)
    sys.exit(code)


class _Main(click.Group):
    """click's own usage errors (unknown option, missing value, out of range) speak like every
    other bad input: one line naming the problem and where the help is, JSON with --json, exit 2."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            return super().main(args=argv, prog_name=prog_name or "immutdock", standalone_mode=False, **extra)
        except click.ClickException as exc:
            named = next((a for a in argv if a in self.commands), None)
            where = exc.ctx.command_path if isinstance(exc, click.UsageError) and exc.ctx and exc.ctx.parent \
                else " ".join(["immutdock"] + ([named] if named else []))
            message = " ".join(exc.format_message().split()).rstrip(".")
            _fail(Ctx(None, "--json" in argv, False), ConfigError("", message, f"see `{where} --help`"), code=2)
        except click.exceptions.Abort:
            sys.exit(130)


@click.group(cls=_Main, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="immutdock")
def main() -> None:
    """Immutable, zero-downtime releases of a Docker Compose app.

    \b
    immutdock reads your compose file plus an `x-immutdock:` block, builds every
    image and tags it by the hash of its content, starts the new version beside the
    live one (blue/green), gates it on health, switches traffic in an HAProxy router
    without dropping a request, and records the release on the engine so rollback
    is instant.

    \b
    Typical use:
      immutdock plan          # what a release would do; changes nothing
      immutdock release       # build, start, gate, switch, retire
      immutdock status        # live color and release, health, router
      immutdock rollback      # back to the previous release, no rebuild
    """


@main.command(epilog=EPILOG)
@common
def build(ctx: Ctx) -> None:
    """Build every service's image, tagged by the hash of its inputs.

    Same inputs, same tag: an image already on the engine is reused ("cached").
    The hash covers the build context after .dockerignore (paths, bytes, executable
    bits, symlinks), the Dockerfile, build args, target, additional contexts and the
    image IDs of the FROM images - not modification times or where the checkout is.
    """
    from immutdock.apply.build import apply_images, plan_images
    from immutdock.gateways.compose import Compose
    from immutdock.gateways.engine import Engine

    app = ctx.load()
    engine = Engine()
    specs = {s.name: s.build for s in app.services.values() if s.build}
    plans = plan_images(app.name, specs, engine)
    compose = Compose()
    try:
        done = apply_images(app.name, plans, app.project_dir, engine, compose, ctx.progress)
    finally:
        compose.close()

    def human() -> None:
        for item in done:
            state = "cached" if item.cached else "built"
            click.echo(f"{item.service:<16} {item.image:<40} {state}")
        if not done:
            click.echo("no service has build:; nothing to build")

    ctx.emit([i.as_json() for i in done], human)


def _image_action(i: Any, app: Any, lookups: Mapping[str, str | None]) -> str:  # i: ImagePlan, app: App
    if i.source is None:
        if i.missing_base:
            return f"build (its base {i.missing_base} is not on the engine: release pulls it, then knows the tag)"
        return "reuse" if i.cached else "build"
    always = app.services[i.service].definition.get("pull_policy") == "always"
    if i.missing_base:
        found = lookups.get(i.source)
        return f"pull {i.source} (not on the engine" + (f"; CANNOT BE FOUND: {found})" if found else ")")
    then = "; release pulls it again first (pull_policy: always)" if always else ""
    if not i.pinned:
        return f"reuse {i.source} as it is (stateful){then}"
    return (f"reuse {i.source} ({i.image_id[:19]}){then}" if i.cached
            else f"pin {i.source} ({i.image_id[:19]}) by its ID{then}")


def _found(i: Any, lookups: Mapping[str, str | None]) -> dict[str, Any]:
    """The registry lookup of a missing pulled image, for --json."""
    return {"registry": lookups[i.source] or "found"} if i.source in lookups else {}


def _lookups(ctx: Ctx, engine: Any, images: Any) -> dict[str, str | None]:
    """Each image-only service's image the engine lacks, looked up in its registry (nothing
    pulled): None when found, else why not, also warned."""
    found = {i.source: engine.registry_lookup(i.source) for i in images if i.source and i.missing_base}
    for ref, why in found.items():
        if why:
            ctx.warn(f"image {ref} is not on the engine and cannot be found in its registry ({why}); "
                     "fix the name, or load it (docker load -i FILE)")
    return found


@main.command(epilog=EPILOG)
@click.option("--print", "only_print", is_flag=True, help="Print the block instead of writing it.")
@common
def init(ctx: Ctx, only_print: bool) -> None:
    """Write the inferred x-immutdock block into the compose file, for review.

    Appends the block at the end of the file, each setting under a comment saying why it
    was inferred (the roles `immutdock plan` shows); nothing else in the file changes,
    comments and order included. Settings in the block are used as they are, so a later
    change to the file no longer moves them. Refuses (exit 2) when the file has a block.
    """
    from immutdock.config import compose_file as config, infer

    app = ctx.load()
    if config.BLOCK in config.read_yaml(app.compose_file):
        raise ConfigError(config.BLOCK, f"{app.compose_file.name} already has an x-immutdock block",
                          "edit it by hand; `immutdock plan` shows each service's role and why")
    text = infer.block_text(app.settings.router, app.roles)
    roles = {r.service: r.role for r in app.roles}
    if not only_print:
        before = app.compose_file.read_text(encoding="utf-8")
        _replace_file(app.compose_file, before + ("" if before.endswith("\n") else "\n") + text)
        try:
            again = config.load(Path.cwd(), ctx.file)
        except ImmutdockError:
            _replace_file(app.compose_file, before)
            raise
        if {r.service: r.role for r in again.roles} != roles:
            _replace_file(app.compose_file, before)
            raise ImmutdockError("the written block gave other roles than were inferred; the file was put back",
                                 "please report this, with the compose file")
    ctx.emit({"file": str(app.compose_file), "written": not only_print, "block": text, "roles": roles},
             lambda: click.echo(text.strip("\n") if only_print else
                                f"wrote an x-immutdock block at the end of {app.compose_file.name} ("
                                + ", ".join(f"{k}: {v}" for k, v in roles.items())
                                + "); review it, then `immutdock plan`"))


def _replace_file(path: Path, text: str) -> None:
    """Write `text` to a file beside `path`, then rename it over `path` (its mode kept)."""
    tmp = path.with_name(f".{path.name}.immutdock-init")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)


@main.command(epilog=EPILOG)
@common
def plan(ctx: Ctx) -> None:
    """Show what a release would do, changing nothing.

    Lists each service's role (routed, stateful, swapped, or a job that runs once per
    release) and why: what the x-immutdock block says, or what the file shows (published
    ports, a database image, a data volume, a service others wait for to complete). Then
    the images to build, pull, pin or reuse, which color starts, which one stops, and
    whether the release would be a no-op.
    """
    from immutdock.targets.observe import observe

    app = ctx.load(prefetch=observe, warn=True)
    roles = [r.as_json() for r in app.roles]
    target = ctx.target(app)
    if target is not None:
        with ctx.fleet(app, target) as fleet:
            per_host = fleet.plan()
        ctx.emit({"roles": roles, "target": target.name, "hosts": per_host},
                 lambda: [click.echo(f"{p['host']}  " + (f"no-op: {p['reason']}; {p['color']} keeps serving "
                                                         f"{p['release']}" if p["noop"] else
                                                         f"start {p['release']} as {app.name}-{p['color']} "
                                                         f"({p['reason']})")) for p in per_host])
        return
    deployer = ctx.deployer(app)
    if app.settings.router is None:
        from immutdock.apply.build import plan_app_images

        images = plan_app_images(app, deployer.engine, pull=False)
        lookups = _lookups(ctx, deployer.engine, images)
        ctx.emit({"roles": roles, "images": [{**i.as_json(), **_found(i, lookups)} for i in images]},
                 lambda: [click.echo(f"{i.service:<16} {i.image:<40} {_image_action(i, app, lookups)}")
                          for i in images])
        return
    release_plan, _router, _state = deployer.plan(pull=False, observed=lambda: ctx.prefetched(app, observe))
    lookups = _lookups(ctx, deployer.engine, release_plan.images)

    def human() -> None:
        p = release_plan
        for r in app.roles:
            click.echo(f"role   {r.line()}")
        for i in p.images:
            click.echo(f"image  {i.service:<14} {i.image:<40} {_image_action(i, app, lookups)}")
        if p.noop:
            click.echo(f"no-op: {p.reason}; {p.color} keeps serving {p.release}")
            return
        click.echo(f"start  {p.release} as {app.name}-{p.color} ({p.reason})")
        for c in p.cleanup:
            click.echo(f"remove half-made {app.name}-{c}")
        if p.router:
            click.echo(f"router {app.name}-router {p.router}")
        if p.stateful_changes:
            click.echo(f"state  {', '.join(p.stateful_changes)} changes FIRST: recreated stop-first (a short outage "
                       f"of {', '.join(p.stateful_changes)}) before the new color starts; if the release then "
                       f"fails, {'they keep' if len(p.stateful_changes) > 1 else 'it keeps'} the new definition")
        elif p.stateful:
            click.echo(f"state  {', '.join(p.stateful)} in {app.name}-state unchanged")
        for name in p.stateful_removed:
            click.echo(f"state  {name} is no longer in the file: its container is removed, its volumes are kept")
        click.echo(f"switch traffic to {p.color}" + (f", drain and stop {p.retire}" if p.retire else ""))

    ctx.emit({"roles": roles, **release_plan.as_json(),
              "images": [{**i.as_json(), **_found(i, lookups)} for i in release_plan.images]}, human)


@main.command(epilog=EPILOG)
@common
def release(ctx: Ctx) -> None:
    """Build, start the new color, gate it on health, switch traffic, retire the old.

    A no-op when content and config are unchanged. On any failure before the switch
    the new color is removed and the live release keeps serving (exit 1).
    """
    from immutdock.targets.observe import observe

    app = ctx.load(prefetch=observe, warn=True)
    target = ctx.target(app)
    if target is not None:
        with ctx.fleet(app, target) as fleet:
            result = fleet.release()
        ctx.emit(result.as_json(), lambda: click.echo(_hosts_text(result)))
        return
    deployer = ctx.deployer(app)
    try:
        outcome = deployer.release(observed=lambda: ctx.prefetched(app, observe))
    finally:
        deployer.compose.close()

    def human() -> None:
        if outcome.outcome == "noop":
            click.echo(f"nothing to release: {outcome.message}; {outcome.color} is serving at {outcome.url}")
        else:
            click.echo(f"{outcome.release} is live on {outcome.color} at {outcome.url}")

    ctx.emit(outcome.as_json(), human)


@main.command(epilog=EPILOG)
@click.option("--to", "to", default=None, metavar="RELEASE", help="Release id to go back to (e.g. r3).")
@click.option("--archive", "archive", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
              help="Where `prune --archive` wrote the release's images, loaded back when they are gone "
                   "(with --target, each host's from DIR/HOST/).")
@common
def rollback(ctx: Ctx, to: str | None, archive: Path | None) -> None:
    """Go back to the previous (or the named) release, without rebuilding.

    The old release's images and recorded compose project are started as the idle
    color and pass the same health gate and switch as a release. Stateful services
    are left as they are. When a prune removed the release's images, --archive DIR
    (the folder of `prune --archive`) loads them back first, checksum checked.
    """
    app = ctx.load()
    target = ctx.target(app)
    if target is not None:
        with ctx.fleet(app, target) as fleet:
            try:
                result = fleet.rollback(to, archives={h: _host_folder(archive, h) for h in target.hosts}
                                        if archive is not None else None, bar=ctx.bar)
            finally:
                ctx.stop_bars()
        ctx.emit(result.as_json(), lambda: click.echo(_hosts_text(result)))
        return
    deployer = ctx.deployer(app)
    try:
        outcome = deployer.rollback(to, archive=archive, bar=ctx.bar)
    finally:
        deployer.compose.close()
        ctx.stop_bars()
    ctx.emit(outcome.as_json(), lambda: click.echo(f"{outcome.message} at {outcome.url}"))


@main.command(epilog=EPILOG)
@click.option("--stateful", is_flag=True, help="Also replace drifted stateful services (stop-first: each is down "
                                               "until its fresh container is up; its volumes are kept).")
@common
def heal(ctx: Ctx, stateful: bool) -> None:
    """Replace what drifted with fresh containers of the live release, without rebuilding.

    The live release's images and recorded compose project start as the idle color and pass
    the same health gate and switch as a release (no request dropped); the drifted color is
    drained and removed. It is recorded as a new release (kind heal). Stateful services are
    replaced only with --stateful, stop-first, from the same image and definition. Strangers
    and a compose file changed without a release are never healed: they are reported. Exits
    0 with "nothing to heal" when `drift` finds nothing heal replaces. With --target, each
    host heals what drifted on it.
    """
    app = ctx.load()
    target = ctx.target(app)
    if target is not None:
        with ctx.fleet(app, target) as fleet:
            def one(host: Any) -> dict[str, Any]:
                deployer = fleet.deployer(host, hold_lock=True)
                return _heal(ctx, deployer, app, stateful, f"{host.name}: " if len(target.hosts) > 1 else "")
            rows = [{"host": h, **r} for h, r in zip(target.hosts, fleet.each(one))]
        ctx.emit({"target": target.name, "hosts": rows},
                 lambda: [click.echo(f"{r['host']}  {line}") for r in rows for line in r["lines"]])
        return
    data = _heal(ctx, ctx.deployer(app), app, stateful)
    ctx.emit(data, lambda: click.echo("\n".join(data["lines"])))


def _heal(ctx: Ctx, deployer: Any, app: Any, stateful: bool, prefix: str = "") -> dict[str, Any]:
    """Heal one engine: what drifted, replaced; the result with its lines for people."""
    from immutdock.apply import drift

    report = _drift(deployer, app)
    stateful_names = {s.name for s in app.stateful}
    replaceable = [f for f in report["drift"] if f["service"]
                   and f["kind"] in ("image", "missing", "extra", "stopped", "restarting", "filesystem")]
    swapped = [f for f in replaceable if f["service"] not in stateful_names]
    states = [f for f in replaceable if f["service"] in stateful_names and stateful and f["kind"] != "extra"]
    for f in report["drift"]:
        if f not in swapped and f not in states:
            hint = " (add --stateful to replace it)" if f in replaceable and f["kind"] != "extra" else ""
            ctx.warn(f"{prefix}not healed: {drift.Finding(**f).text()}{hint}")
    if not swapped and not states:
        return {"outcome": "noop", "drift": report["drift"],
                "lines": [f"nothing to heal ({report['release'] or 'nothing released'})"]}
    for f in swapped + states:
        ctx.say(f"{prefix}healing: {drift.Finding(**f).text()}")
    try:
        replaced = deployer.heal_stateful(sorted({f["service"] for f in states})) if states else []
        outcome = deployer.rollback(None, heal=True) if swapped else None
    finally:
        deployer.compose.close()
    lines = [f"replaced {name} (stateful) with a fresh container of {report['release']}" for name in replaced]
    lines += [f"{outcome.message} at {outcome.url}"] if outcome else []
    return {**(outcome.as_json() if outcome else {"outcome": "ok", "kind": "heal"}), "healed": swapped + states,
            "stateful_replaced": replaced, "lines": lines}


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON on stdout (for CI).")
def doctor(as_json: bool) -> None:
    """Check that this machine can release: the engine, the compose and buildx plugins
    (each in a version immutdock can drive) and immutdock's own files.

    Says what is missing and how to get it. Exits 0 when all is well, 1 otherwise;
    needs no compose file.
    """
    from immutdock.cli.doctor import run_checks

    checks = run_checks()
    if as_json:
        click.echo(json.dumps([c.as_json() for c in checks], indent=2))
    else:
        for c in checks:
            mark = click.style("ok  ", fg="green") if c.ok else click.style("FAIL", fg="red")
            click.echo(f"{mark} {c.name:<10} {c.found}" + (f"\n     fix: {c.fix}" if c.fix else ""))
    sys.exit(0 if all(c.ok for c in checks) else 1)


@main.command(epilog=EPILOG)
@click.option("--reap", is_flag=True, help="Finish what an interrupted release left: a stateful recreate cut short, "
                                           "a color half-made or not retired (takes the lock; the next release does "
                                           "it too).")
@common
def status(ctx: Ctx, reap: bool) -> None:
    """Live color and release, image tags, health of every container, router state.

    Exits 1 when the app does not serve: no live color, the router, the live color or a
    stateful service is not running, or the live color has no server that passes the
    router's health check.

    Reads only. A color that exists but is not live is reported: half-made (a release in
    progress, or one interrupted before its switch) or not retired (the previous release,
    when one was interrupted after its switch); --reap removes it when no release runs. A
    stateful recreate that a killed immutdock cut short (its database stopped) is named, and
    --reap finishes it first.
    """
    from immutdock.apply.status import describe, gather

    app = ctx.load(prefetch=gather)
    target = ctx.target(app)
    if target is not None:
        _remote_status(ctx, app, target, reap)
        return
    state, stats = ctx.prefetched(app, gather)
    if reap:
        state, stats = _reap(ctx, ctx.deployer(app), state, stats)
    report = describe(app, state, stats)
    ctx.emit(report, lambda: click.echo(_status_text(report)))
    _left_over(ctx, app, report)
    if report["problem"]:
        click.echo(click.style(f"error: {app.name} does not serve: {report['problem']}", fg="red"), err=True)
        sys.exit(1)


def _reap(ctx: Ctx, deployer: Any, state: Any, stats: Any, prefix: str = "") -> tuple[Any, Any]:
    """status --reap on one engine: the colors an interrupted release left, removed (under the
    lock); the state and stats read again when something was."""
    from immutdock.apply.status import gather

    from immutdock.errors import ImmutdockError

    try:
        reaped = deployer.reap_idle(state)
    except ImmutdockError as exc:  # said, and status goes on to report what it finds
        ctx.warn(prefix + f"could not finish what an interrupted release left: {exc.one_line()}")
        return state, stats
    if reaped.recreated:
        ctx.warn(prefix + f"recreated {', '.join(reaped.recreated)}, whose recreate an interrupted command cut short")
    for color in reaped.colors:
        ctx.warn(prefix + (f"retired {deployer.app.name}-{color}, the release before {state.live_release}"
                           if color in state.not_retired else
                           f"removed half-made {deployer.app.name}-{color} left by an interrupted release"))
    return gather(deployer.engine, deployer.app.name) if reaped.colors or reaped.recreated else (state, stats)


def _left_over(ctx: Ctx, app: Any, report: Mapping[str, Any], prefix: str = "", where: str = "") -> None:
    """Warn of the colors an interrupted release left on one engine (`where`: the options that
    name it again, e.g. " --target prod")."""
    for color in report["half_made"]:
        ctx.warn(f"{prefix}{app.name}-{color} exists but is not live (a release in progress, or one that was "
                 f"interrupted); `immutdock status --reap{where}` or the next release removes it")
    for old in report["not_retired"]:
        ctx.warn(f"{prefix}{app.name}-{old['color']} still runs {old['release']}, the release before "
                 f"{report['live_release']}: traffic left it, but it was not retired (the release was interrupted "
                 f"after its switch); `immutdock status --reap{where}` or the next release retires it")


def _hosts_text(result: Any) -> str:  # result: FleetOutcome
    from immutdock.apply.fleet import size_text

    lines = [f"{'host':<36} {'release':<8} {'color':<6} {'outcome':<12} {'shipped':>10} {'seconds':>8}"]
    for h in result.hosts:
        lines.append(f"{h.host:<36} {h.release or '-':<8} {h.color or '-':<6} {h.outcome:<12} "
                     f"{size_text(h.bytes):>10} {h.seconds:>8.1f}")
    return "\n".join(lines)


def _remote_status(ctx: Ctx, app: Any, target: Any, reap: bool) -> None:
    from immutdock.apply.fleet import drift
    from immutdock.targets.ledger import parse_release_id
    from immutdock.apply.status import describe, gather

    def one(host: Any) -> dict[str, Any]:
        state, stats = gather(host.engine, app.name)
        if reap:  # each host under its own lock: a host a release holds is left as it is
            state, stats = _reap(ctx, fleet.deployer(host, hold_lock=True), state, stats, f"{host.name}: ")
        return describe(app, state, stats)

    with ctx.fleet(app, target) as fleet:
        reports = fleet.each(one)
    hosts = [{"host": h, **r} for h, r in zip(target.hosts, reports)]
    apart = drift({h["host"]: (parse_release_id(h["live_release"] or "") or 0, h["images"])
                   for h in hosts if h["live_color"]})
    problems = [f"{h['host']}: {h['problem']}" for h in hosts if h["problem"]]
    if apart:
        problems.append(f"{', '.join(apart)} serve{'s' if len(apart) == 1 else ''} other images than the newest release "
                        f"on {target.name} (the fleet drifted apart); `immutdock release --target {target.name}` "
                        "brings every host to the file's release")
    data = {"target": target.name, "hosts": hosts, "drift": apart, "problem": "; ".join(problems) or None}

    def human() -> None:
        click.echo(f"{'host':<36} {'live':<8} {'color':<6} {'router':<10} state")
        for h in hosts:
            click.echo(f"{h['host']:<36} {h['live_release'] or '-':<8} {h['live_color'] or '-':<6} "
                       f"{h['router']['status']:<10} {'DRIFTED ' if h['host'] in apart else ''}"
                       f"{h['problem'] or 'serving'}")

    ctx.emit(data, human)
    for h in hosts:
        _left_over(ctx, app, h, f"{h['host']}: ", f" --target {target.name}")
    if problems:
        click.echo(click.style(f"error: {app.name} on {target.name}: {problems[0]}", fg="red"), err=True)
        sys.exit(1)


def _status_text(report: dict[str, Any]) -> str:
    lines = [f"app           {report['app']}",
             f"live          {report['live_release'] or '-'} on {report['live_color'] or '-'}",
             f"url           {report['url'] or '-'}",
             f"router        {report['router']['status']}"
             + (f", {report['router']['up']} server(s) up" if report['router'].get('up') is not None else "")]
    for c in report["containers"]:
        lines.append(f"  {c['role']:<6} {c['name']:<32} {c['status']:<8} {c['health'] or '-':<10} {c['image']}")
    if report["in_progress"]:
        lines.append(f"in progress   {report['in_progress']}")
    for cut in report["interrupted"]:
        lines.append(f"interrupted   {cut['release']}, killed {'after' if cut['live'] else 'around'} its switch "
                     "(`immutdock status --reap` or the next release settles its record)")
    if report["recreating"]:
        lines.append(f"interrupted   the recreate of {', '.join(report['recreating'])} "
                     "(`immutdock status --reap` or the next release finishes it)")
    return "\n".join(lines)


@main.command(epilog=EPILOG)
@common
def history(ctx: Ctx) -> None:
    """Every release and rollback: id, time, image tags, git revision, outcome.

    Records are kept forever; "ok, pruned" marks a release whose images `prune` removed
    (it can no longer be rolled back to)."""
    from immutdock.targets import ledger

    app = ctx.load(prefetch=ledger.history)
    target = ctx.target(app)
    if target is not None:
        with ctx.fleet(app, target) as fleet:
            found = fleet.each(lambda h: [r.summary() for r in ledger.history(h.engine, app.name)])
        per_host = [{"host": h, "releases": rows} for h, rows in zip(target.hosts, found)]
        ctx.emit({"target": target.name, "hosts": per_host},
                 lambda: [_history_lines(app, item["releases"], f"{item['host']}  ") for item in per_host])
        return
    rows = [r.summary() for r in ctx.prefetched(app, ledger.history)]
    ctx.emit(rows, lambda: _history_lines(app, rows))


def _history_lines(app: Any, rows: list[dict[str, Any]], prefix: str = "") -> None:
    if not rows:
        click.echo(f"{prefix}{app.name} has no releases yet")
    for r in rows:
        images = " ".join(sorted(r["images"].values()))
        extra = f" -> {r['source']}" if r["source"] else ""
        outcome = "ok, pruned" if r["compacted"] else r["outcome"]
        click.echo(f"{prefix}{r['release']:<6} {r['created']:<26} {r['kind']}{extra:<8} {outcome:<12} "
                   f"{(r['git'] or '-')[:12]:<13} {images}"
                   + (f"  profiles: {','.join(r['profiles'])}" if r["profiles"] else ""))


@main.command(epilog=EPILOG)
@click.option("--keep", type=click.IntRange(min=2), default=None,
              help="Releases whose images stay (default: x-immutdock.keep).")
@click.option("--archive", "archive", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
              help="First write each release whose images go into DIR: APP-rN.tar.gz (a gzip'd docker save) and "
                   "APP-rN.json (its SHA-256, image IDs and the release record); `rollback --to rN --archive DIR` "
                   "brings it back. With --target, each host's go into DIR/HOST/.")
@common
def prune(ctx: Ctx, keep: int | None, archive: Path | None) -> None:
    """Remove release images beyond --keep. Never a volume; never the live release nor the
    one `rollback` would pick. Takes the release lock (exit 3 while a release runs).
    With --archive, nothing is removed unless every archive was written whole."""
    from immutdock.targets import lock

    app = ctx.load()
    target = ctx.target(app)
    if archive is not None:
        _writable(archive, "--archive")
        for host in target.hosts if target is not None else ():
            _writable(_host_folder(archive, host), "--archive")
    if target is not None:
        def one(h: Any) -> dict[str, Any]:
            return _prune(fleet.deployer(h), keep, _host_folder(archive, h.name) if archive else None,
                          lambda w, d, t, n=h.name: ctx.bar(f"{n}: {w}", d, t))

        with ctx.fleet(app, target) as fleet, fleet.locked("prune"):
            try:
                found = fleet.each(one)
            finally:
                ctx.stop_bars()
        per_host = [{"host": h, **r} for h, r in zip(target.hosts, found)]
        ctx.emit({"target": target.name, "hosts": per_host},
                 lambda: [click.echo(f"{r['host']}  {line}") for r in per_host for line in _prune_lines(r)])
        return
    deployer = ctx.deployer(app)
    lock.acquire(deployer.engine, app.name, "prune", ctx.warn)  # a release in progress may still need its images
    try:
        result = _prune(deployer, keep, archive, ctx.bar)
    finally:
        lock.release(deployer.engine, app.name)
        ctx.stop_bars()
    ctx.emit(result, lambda: click.echo("\n".join(_prune_lines(result))))


def _writable(folder: Path, option: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(option, f"cannot make the folder {folder}: {exc.strerror or exc}",
                          f"name a folder you can write with {option}") from None
    if not os.access(folder, os.W_OK):
        raise ConfigError(option, f"cannot write into {folder}", f"name a folder you can write with {option}")


def _prune_lines(result: Mapping[str, Any]) -> list[str]:
    lines = [f"archived {a['release']} to {a['archive']}" for a in result.get("archived", [])]
    lines += [f"removed {r}" for r in result["removed_images"]]
    if result["compacted_records"]:
        lines.append(f"compacted the records of {', '.join(result['compacted_records'])}")
    return lines or ["nothing to prune"]


def _prune(deployer: Any, keep: int | None, archive: Path | None = None, bar: Any = None) -> dict[str, Any]:
    """Prune one engine (its lock held by the caller); with `archive`, what goes is archived first."""
    from immutdock.apply import archive as archives
    from immutdock.targets import ledger
    from immutdock.targets.observe import observe
    from immutdock.apply.prune import apply_prune, compact_records, plan_prune

    engine, app = deployer.engine, deployer.app
    state = observe(engine, app.name)
    result = plan_prune(state, keep or app.settings.keep)
    archived = []
    redactor = deployer.redactor(state)
    if archive is not None:
        going = set(result.remove)
        for record in state.records:
            refs = archives.own_images(engine, app.name, record) if record.outcome == "ok" and \
                going & set(record.images.values()) else []
            if going & set(refs):  # the manifest keeps the record as tidy leaves it: no value in clear
                made = archives.write(engine, app.name, ledger.redacted(record, redactor), refs, archive, bar)
                archived.append({"release": record.id, "archive": str(archive / made.archive), "size": made.size,
                                 "sha256": made.sha256, "images": list(made.image_ids)})
    removed = apply_prune(engine, app.name, result)
    compacted = compact_records(engine, app.name, state, removed, redactor)
    return {"kept_releases": list(result.keep), "removed_images": removed, "compacted_records": compacted,
            "archived": archived}


@main.command(name="drift", epilog=EPILOG)
@common
def drift_command(ctx: Ctx) -> None:
    """Compare what runs with the live release; exit 1 when anything drifted, 0 ("no drift")
    otherwise. Reads only.

    \b
    Reported, each with the container and what changed:
      image       a container runs another image than the release's
      config      the compose file changed and was not released (configuration hash)
      stranger    a container with the app's labels that no release started
      missing     a service has fewer containers than the release started
      extra       more containers than the release started, or a color that is not live
      stopped     a container (or the router) that does not run; restarting: keeps restarting
      filesystem  files changed inside a running container (`docker diff`), outside its
                  volumes, binds, tmpfs and runtime folders (/run, /tmp, ...): a snowflake
    With --target, each host is compared with its own live release.
    """
    app = ctx.load()
    target = ctx.target(app)
    if target is not None:
        with ctx.fleet(app, target) as fleet:
            reports = fleet.each(lambda h: _drift(fleet.deployer(h), app))
        rows = [{"host": h, **r} for h, r in zip(target.hosts, reports)]
        drifted = any(r["drift"] for r in rows)
        ctx.emit({"target": target.name, "outcome": "drift" if drifted else "no drift", "hosts": rows},
                 lambda: [click.echo(f"{r['host']}  {line}") for r in rows for line in _drift_lines(r)])
    else:
        report = _drift(ctx.deployer(app), app)
        drifted = bool(report["drift"])
        ctx.emit(report, lambda: click.echo("\n".join(_drift_lines(report))))
    sys.exit(1 if drifted else 0)


def _drift(deployer: Any, app: Any) -> dict[str, Any]:
    from immutdock.apply import drift
    from immutdock.targets.observe import observe

    t0 = time.monotonic()
    engine = deployer.engine
    state = observe(engine, app.name)
    expected = drift.expect(app, state, engine, deployer.redactor(state))
    found = drift.findings(expected, state.containers, drift.look(engine, state.containers))
    return {"app": app.name, "release": expected.release, "color": expected.color,
            "outcome": "drift" if found else "no drift", "drift": [f.as_json() for f in found],
            "seconds": round(time.monotonic() - t0, 3)}


def _drift_lines(report: Mapping[str, Any]) -> list[str]:
    from immutdock.apply.drift import Finding

    if not report["drift"]:
        return [f"no drift ({report['release'] or 'nothing released'})"]
    return [Finding(**f).text() for f in report["drift"]]


@main.command(epilog=EPILOG)
@click.option("--force", is_flag=True, help="Remove the lock even though its holder still runs on this machine.")
@common
def unlock(ctx: Ctx, force: bool) -> None:
    """Free the app's release lock after saying who held it (use when a holder died).

    Refuses (exit 2) while the holder is still running on this machine, unless --force.
    A release that finds the lock of a holder that died on this machine takes it over
    by itself; `unlock` is for holders that died elsewhere.
    """
    from immutdock.targets import lock

    app = ctx.load()
    target = ctx.target(app)
    if target is not None:
        with ctx.fleet(app, target) as fleet:
            holders = fleet.each(lambda h: lock.unlock(h.engine, app.name, force, ctx.warn))
        rows = [{"host": h, "held_by": x.describe() if x else None} for h, x in zip(target.hosts, holders)]
        ctx.emit({"app": app.name, "target": target.name, "hosts": rows},
                 lambda: [click.echo(f"{r['host']}  " + (f"released the lock held by {r['held_by']}" if r["held_by"]
                                                          else f"{app.name} was not locked")) for r in rows])
        return
    holder = lock.unlock(ctx.engine, app.name, force, ctx.warn)
    data = {"app": app.name, "held_by": holder.describe() if holder else None}
    ctx.emit(data, lambda: click.echo(f"released the lock held by {holder.describe()}" if holder
                                      else f"{app.name} was not locked"))


@main.command(name="verify", epilog=EPILOG)
@click.option("--release", "release_id", metavar="RELEASE", default=None,
              help="The release to compare with (default: the live one), e.g. r3.")
@click.option("--cached", is_flag=True, help="Let the rebuild use the build cache (faster, and proves less: a "
                                             "cached step is not run again).")
@click.option("--no-rebuild", "no_rebuild", is_flag=True, help="Compare the content hashes only; build nothing.")
@click.option("--strict", is_flag=True, help="Also exit 1 when a rebuilt image's ID differs (a build that is not "
                                             "reproducible).")
@common
def verify_command(ctx: Ctx, release_id: str | None, cached: bool, no_rebuild: bool, strict: bool) -> None:
    """Rebuild a release's images from the current checkout, replacing nothing, and compare.

    \b
    For each image the file builds:
      content hash  the inputs hashed now against the release image's; when they differ,
                    the input that did is named: a file or folder of the build context, the
                    Dockerfile, a build arg, a base image's ID, the target
      image ID      when the content is the same, the image is built again (without the
                    build cache unless --cached) under a throwaway tag and its ID compared:
                    a different ID means the build is not reproducible
    Exits 1 when a content hash differs (with --strict also when an image ID does), 0 otherwise.
    Nothing running is touched; the throwaway tag is removed.

    With --target, each host's release (its live one, or --release) is compared: the images
    as they are on the host, rebuilt here once for all hosts that run the same image.
    """
    from immutdock.apply import verify
    from immutdock.gateways.compose import Compose
    from immutdock.targets.observe import observe

    app = ctx.load()
    target = ctx.target(app)
    compose = Compose()
    done: dict[tuple[str, str, str | None], Any] = {}  # the same image on several hosts is checked once

    def check(engine: Any) -> tuple[Any, list[Any]]:  # -> (Record, [ImageCheck])
        state = observe(engine, app.name)
        record = verify.pick_record(state.records, release_id, state.live_record.id if state.live_record else None)
        checks = []
        for service, ref in sorted(record.images.items()):
            found = engine.inspect_image(ref)
            key = (service, ref, (found or {}).get("Id"))
            if key not in done:
                done[key] = verify.check_image(app, ctx.engine, compose, service, ref, not no_rebuild, cached,
                                               ctx.progress, found)
            checks.append(done[key])
        return record, checks

    try:
        if target is None:
            found = [(None, *check(ctx.engine))]
        else:
            with ctx.fleet(app, target) as fleet:
                found = [(h.name, *check(h.engine)) for h in fleet.hosts]
    finally:
        compose.close()
    rows = []
    for host, record, checks in found:
        differs = any(c.content_hash_equal is False for c in checks)
        unreproducible = any(c.image_id_equal is False for c in checks)
        outcome = "differs" if differs else ("not reproducible" if unreproducible else "verified")
        rows.append({"host": host, "release": record.id, "outcome": outcome, "differs": differs,
                     "unreproducible": unreproducible, "images": [c.as_json() for c in checks],
                     "lines": [line for c in checks for line in c.lines()] + [f"{record.id}: {outcome}"]})
    if target is None:
        data = {"app": app.name, **{k: rows[0][k] for k in ("release", "outcome", "images")}}
    else:
        data = {"app": app.name, "target": target.name,
                "hosts": [{k: r[k] for k in ("host", "release", "outcome", "images")} for r in rows]}
    ctx.emit(data, lambda: click.echo("\n".join(f"{r['host']}  {line}" if r["host"] else line
                                                for r in rows for line in r["lines"])))
    sys.exit(1 if any(r["differs"] or (strict and r["unreproducible"]) for r in rows) else 0)


# -- volumes -----------------------------------------------------------------------------------
VOLUMES_EPILOG = """\b
Exit codes: 0 ok, 1 failed (also: a backup that does not hold what its
manifest says), 2 bad input (nothing changed), 3 a release or another
volumes command holds the app's lock, 130 interrupted (Ctrl-C or SIGTERM)."""


@main.group(epilog=VOLUMES_EPILOG)
def volumes() -> None:
    """Back up, restore and check the app's named volumes (the data that outlives releases).

    \b
    A backup of a volume is two files in a folder (default: ~/.local/share/immutdock/
    backups/APP, or --to DIR): APP-VOLUME-TIME.tar.gz, the volume's files as a gzip'd
    tar, and APP-VOLUME-TIME.json, its manifest (app, volume, live release, time, the
    archive's SHA-256 and one SHA-256 per file). Stateful services that mount the volume
    are stopped for a consistent copy and started again; swapped services keep serving.

    A volume the file gives a dump command is backed up by it instead, run in its stateful
    service while that keeps serving; the output is APP-VOLUME-TIME.dump.gz. Its load
    command reads it back on its standard input: in the running service (restore --force),
    or in a copy of the service started on the new or scratch volume (restore --into,
    verify), which waits for the service's health check:

    \b
      x-immutdock:
        volumes:
          pgdata:
            dump: pg_dump -Fc -U app app
            load: pg_restore --clean --if-exists -U app -d app

    \b
      immutdock volumes ls                          # the app's volumes and their backups
      immutdock volumes backup --verify             # every volume, each restored once to check it
      immutdock volumes backup pgdata --to /backups # one volume, into a folder of yours
      immutdock volumes verify BACKUP               # restore into a scratch volume and compare
      immutdock volumes restore BACKUP --into pgdata_restored
      immutdock volumes restore BACKUP --force      # over the volume's current content

    With --target, ls and backup work on each host (its backups in DIR/HOST/); restore
    and verify write into one engine: name its host with --host.
    """


_TO = click.option("--to", "folder", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
                   help="The folder of the backups (default: $XDG_DATA_HOME or ~/.local/share, then "
                        "immutdock/backups/APP).")


def _host_folder(folder: Path, host: str | None) -> Path:
    """A host's folder in `folder` (backups, release archives): its name without ssh://, safe as
    one path segment; `folder` itself for the local engine (None)."""
    return folder / re.sub(r"[^A-Za-z0-9@._-]", "_", host.removeprefix("ssh://")) if host else folder


def _backups_folder(app: Any, folder: Path | None) -> Path:
    if folder is not None:
        return folder
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "immutdock" / "backups" / app.name


@contextlib.contextmanager
def _volume_ops(ctx: Ctx, app: Any, one: bool = False) -> Iterator[list[tuple[str | None, Any]]]:
    """(host name or None for the local engine, backup.Volumes) of each engine the command
    runs on: the local one, or each host of --target, which gets the helper image built here
    (shipped: only the layers it lacks). `one`: a command that writes into one engine."""
    from immutdock.apply import backup
    from immutdock.targets import ship
    from immutdock.gateways.compose import Compose

    target = ctx.target(app)
    if one and target is not None and len(target.hosts) != 1:
        raise ConfigError("--target", f"{target.name} has {len(target.hosts)} hosts and a backup is one volume's",
                          "name one with --host")
    compose = Compose()
    try:
        helper = backup.helper_image(ctx.engine, compose, ctx.progress)
    finally:
        compose.close()
    if target is None:
        try:
            yield [(None, backup.Volumes(ctx.engine, app, helper, ctx.say, ctx.bar))]
        finally:
            ctx.stop_bars()
        return
    with ctx.fleet(app, target) as fleet:
        ship.ship(ctx.engine, {h.name: h.engine for h in fleet.hosts}, [helper], ctx.shipping)
        yield [(h.name, backup.Volumes(h.engine, app, helper, lambda m, n=h.name: ctx.say(f"{n}: {m}"),
                                       lambda w, d, t, n=h.name: ctx.bar(f"{n}: {w}", d, t))) for h in fleet.hosts]


def _read_backup(path: Path) -> tuple[Any, Path]:  # -> (Manifest, archive)
    from immutdock.apply import backup

    manifest = backup.Manifest.read(backup.manifest_of(path))
    return manifest, backup.manifest_of(path).with_name(manifest.archive)


@volumes.command(name="ls", epilog=VOLUMES_EPILOG)
@_TO
@common
def volumes_ls(ctx: Ctx, folder: Path | None) -> None:
    """The app's named volumes: engine name, whether it exists, the containers that mount
    it, and the backups of it in the folder. Reads only."""
    from immutdock.apply import backup
    from immutdock.targets.observe import observe

    app = ctx.load()
    where = _backups_folder(app, folder)
    rows = []
    with _volume_ops(ctx, app) as engines:
        for host, ops in engines:
            state = observe(ops.engine, app.name)
            kept_in = _host_folder(where, host)
            for key, name in backup.pick_volumes(app, ()):
                kept = backup.kept(kept_in, app.name, key)
                rows.append({"host": host, "volume": key, "engine_volume": name,
                             "exists": ops.engine.volume_exists(name),
                             "mounted_by": [c.name for c in backup.users(state.containers, name)],
                             "dump": bool(app.settings.volumes.get(key)),
                             "backups": [str(backup.archive_of(p)) for p in kept]})

    def human() -> None:
        for r in rows:
            latest = f"{len(r['backups'])} backup(s), newest {Path(r['backups'][-1]).name}" if r["backups"] \
                else "no backup"
            click.echo((f"{r['host']}  " if r["host"] else "")
                       + f"{r['volume']:<16} {r['engine_volume']:<32} "
                       f"{'exists' if r['exists'] else 'not created yet':<16} "
                       f"{'mounted by ' + ', '.join(r['mounted_by']) if r['mounted_by'] else 'not mounted':<40} "
                       f"{latest}")
        click.echo(f"backups in {where}")
    ctx.emit({"app": app.name, "folder": str(where), "volumes": rows}, human)


@volumes.command(name="backup", epilog=VOLUMES_EPILOG)
@click.argument("names", nargs=-1, metavar="[VOLUME]...")
@_TO
@click.option("--verify", "and_verify", is_flag=True,
              help="Right after each backup, restore it into a scratch volume and compare every file.")
@common
def volumes_backup(ctx: Ctx, names: tuple[str, ...], folder: Path | None, and_verify: bool) -> None:
    """Copy the app's named volumes (all, or those named) into compressed archives with a
    manifest. Stateful services that mount a volume are stopped for its copy and started
    again; swapped services keep serving. Takes the release lock (exit 3 while a release
    runs). A backup that fails leaves no file under a backup's name."""
    from immutdock.apply import backup
    from immutdock.targets import lock
    from immutdock.targets.observe import observe

    app = ctx.load()
    picked = backup.pick_volumes(app, names)
    where = _backups_folder(app, folder)
    _writable(where, "--to")
    rows = []
    with _volume_ops(ctx, app) as engines:
        for host, ops in engines:  # every volume is there and the app's, and each dump can run, before any copy
            containers = observe(ops.engine, app.name).containers
            for key, name in picked:
                if not ops.own(name, key):
                    raise ConfigError(key, f"volume {name} does not exist {f'on {host} ' if host else ''}yet",
                                      "release the app once; it creates its volumes")
                if key in app.settings.volumes:
                    ops.runs_dump(key, app.settings.volumes[key], containers, name)
        for host, ops in engines:
            into = _host_folder(where, host)
            _writable(into, "--to")
            lock.acquire(ops.engine, app.name, "volumes backup", ctx.warn)
            try:
                state = observe(ops.engine, app.name)
                release = state.live_record.id if state.live_record else None
                for key, name in picked:
                    t0 = time.monotonic()
                    made = ops.backup(key, name, state.containers, release, into)
                    row = {"host": host, "volume": key, "engine_volume": name, "archive": str(into / made.archive),
                           "manifest": str(backup.manifest_of(into / made.archive)), "sha256": made.sha256,
                           "size": made.size, "tar_bytes": made.tar_bytes, "files": len(made.files),
                           "kind": made.kind, "dumped_by": made.service, "stopped": list(made.stopped),
                           "release": release, "seconds": round(time.monotonic() - t0, 2), "verified": None}
                    if and_verify:
                        ops.verify(made, into / made.archive, state.containers)
                        row["verified"] = True
                    rows.append(row)
            finally:
                lock.release(ops.engine, app.name)

    def human() -> None:
        from immutdock.apply.fleet import size_text

        for r in rows:
            what = f"dumped by {r['dumped_by']}, which kept running" if r["kind"] == "dump" else f"{r['files']} files"
            click.echo((f"{r['host']}: " if r["host"] else "")
                       + f"backed up {r['volume']} to {r['archive']} ({size_text(r['size'])}, {what}"
                       + (f", {', '.join(r['stopped'])} stopped meanwhile" if r["stopped"] else "")
                       + (", verified" if r["verified"] is not None else "") + ")")
    ctx.emit({"app": app.name, "outcome": "backed up", "backups": rows}, human)


@volumes.command(name="restore", epilog=VOLUMES_EPILOG)
@click.argument("backup_path", metavar="BACKUP", type=click.Path(path_type=Path))
@click.option("--into", "into", metavar="NEW_VOLUME", default=None,
              help="Restore into this volume of the app (a key of the file's volumes:, or a new name, made "
                   "as APP_NAME) instead of the one backed up.")
@click.option("--force", is_flag=True, help="Replace what the volume holds (refused without it when not empty).")
@common
def volumes_restore(ctx: Ctx, backup_path: Path, into: str | None, force: bool) -> None:
    """Write a backup (its .tar.gz or .json) into the volume it was taken from, or --into
    another. The archive's checksum is checked first and every file after. Refused (exit 2,
    nothing changed) for a backup of another app, a corrupt archive, a volume a swapped
    service mounts, or one that is not empty without --force. Stateful services that mount
    the volume are stopped meanwhile and started again. A dump is loaded by its load
    command: into the running service (with --force), or into a copy of the service started
    on the --into volume. Takes the release lock."""
    from immutdock.targets import lock
    from immutdock.targets.observe import observe

    app = ctx.load()
    manifest, archive = _read_backup(backup_path)
    if into is not None and not _VOLUME_NAME.match(into):
        raise ConfigError("--into", f"{into!r} is not a volume name", "use letters, digits, '_', '.' or '-'")
    with _volume_ops(ctx, app, one=True) as engines:
        host, ops = engines[0]
        lock.acquire(ops.engine, app.name, "volumes restore", ctx.warn)
        try:
            state = observe(ops.engine, app.name)
            t0 = time.monotonic()
            volume, made = ops.restore(manifest, archive, into, state.containers, force)
        finally:
            lock.release(ops.engine, app.name)
    data = {"app": app.name, "host": host, "outcome": "restored", "backup": str(archive), "volume": volume,
            "created": made, "kind": manifest.kind,
            "files": len(manifest.files), "release": manifest.release, "created_at": manifest.created,
            "seconds": round(time.monotonic() - t0, 2)}
    how = f"loaded by {manifest.service}" if manifest.kind == "dump" else f"{len(manifest.files)} files checked"
    ctx.emit(data, lambda: click.echo(f"restored {archive.name} into {'new ' if made else ''}volume {volume} ({how})"))


_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@volumes.command(name="verify", epilog=VOLUMES_EPILOG)
@click.argument("backup_path", metavar="BACKUP", type=click.Path(path_type=Path))
@common
def volumes_verify(ctx: Ctx, backup_path: Path) -> None:
    """Prove a backup restores: check the archive's checksum, restore it into a scratch
    volume, compare every file's SHA-256 with the manifest, remove the scratch volume.
    A dump is loaded by the load command into a copy of its service started on the scratch
    volume. Exit 1 on any difference or a load that fails."""
    from immutdock.targets.observe import observe

    app = ctx.load()
    manifest, archive = _read_backup(backup_path)
    with _volume_ops(ctx, app, one=True) as engines:
        ops = engines[0][1]
        files = ops.verify(manifest, archive, observe(ops.engine, app.name).containers)
    data = {"app": app.name, "outcome": "verified", "backup": str(archive), "kind": manifest.kind, "files": files,
            "sha256": manifest.sha256}
    how = f"loaded into a copy of {manifest.service}" if manifest.kind == "dump" else \
        f"{files} files as in its manifest"
    ctx.emit(data, lambda: click.echo(f"{archive.name}: restored into a scratch volume, {how}"))


if __name__ == "__main__":  # pragma: no cover
    main()
