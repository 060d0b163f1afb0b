"""Commands that operate a released app without knowing its colors: ps, ls, logs, exec, run
(and down, in teardown.py). Each runs on every place of the command (a host of --target, a
swarm) through its Target, the same way."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click

from immutdock.cli.context import common, common_long_file, Ctx, ENGINE, exits
from immutdock.errors import ConfigError, EngineError, Interrupted

if TYPE_CHECKING:
    from immutdock.apply.fleet import Fleet
    from immutdock.plan.state import ContainerState
    from immutdock.targets.base import Target


@click.command(epilog=exits("0 ok", "1 " + ENGINE))
@common
def ps(ctx: Ctx) -> None:
    """The app's containers: name, service, role (router, swapped, stateful, one-off), color
    (* the live one), release, status, health and ports. Reads only.

    \b
      immutdock ps
      immutdock ps --target prod --json
    """
    from immutdock.apply import operate
    from immutdock.targets.observe import observe

    app = ctx.load()
    with ctx.places(app) as fleet:
        found = fleet.each(lambda t: operate.ps_rows(observe(t, app.name), operate.node_names(t)))
    ctx.emit_each(fleet, found, lambda rows: {"app": app.name, "containers": rows}, operate.rows_text,
                  row=lambda rows: {"containers": rows}, before={"app": app.name})


@click.command(name="ls", epilog=exits("0 ok", "1 " + ENGINE))
@common
def ls_command(ctx: Ctx) -> None:
    """Every app immutdock manages on the target (the local engine, or --target's places):
    its live release and color, URL, health and number of releases. Reads only. On the local
    engine it reads no compose file.

    \b
      immutdock ls
      immutdock ls --target prod
    """
    from immutdock.apply import operate
    from immutdock.targets.observe import observe

    def one(t: Target) -> list[dict[str, Any]]:
        rows = []
        for name in t.ledger.apps():
            try:
                rows.append(operate.ls_row(observe(t, name)))
            except EngineError as exc:  # one app that cannot be read (going away meanwhile) hides no other
                rows.append({"app": name, "live_release": None, "live_color": None, "url": None,
                             "health": "unreadable", "releases": None, "containers": None, "error": exc.message})
        return rows

    def lines(rows: list[dict[str, Any]]) -> list[str]:
        head = f"{'APP':<24} {'LIVE':<6} {'COLOR':<6} {'HEALTH':<12} {'RELEASES':<9} URL"
        return [head] + [f"{r['app']:<24} {r['live_release'] or '-':<6} {r['live_color'] or '-':<6} "
                         f"{r['health']:<12} {r['releases'] if r['releases'] is not None else '-':<9} "
                         f"{r['url'] or r.get('error') or '-'}" for r in rows]

    if ctx.target_name is None and not ctx.hosts:  # every app of the local engine: the file is not needed
        from immutdock.targets.hosts import local

        target = local(ctx.engine)
        found = one(target)
        ctx.emit({"apps": found}, lambda: [click.echo(line) for line in lines(found)])
        return
    app = ctx.load()
    with ctx.places(app) as fleet:
        all_found = fleet.each(one)
    ctx.emit_each(fleet, all_found, lambda rows: {"apps": rows}, lines, row=lambda rows: {"apps": rows})


@click.command(epilog=exits("0 ok (Ctrl-C ends a follow)", "1 a log could not be read; or " + ENGINE))
@click.argument("services", nargs=-1, metavar="[SERVICE]...")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming (Ctrl-C stops); a release's new containers "
                                                   "join when they start, the retired ones leave.")
@click.option("--tail", type=click.IntRange(min=0), default=None, metavar="N",
              help="Only the last N lines of each container (default: all).")
@click.option("--since", default=None, metavar="WHEN", help="Only lines since WHEN (2026-01-02T15:04:05, or 10m).")
@click.option("--release", default=None, metavar="rN", help="The containers of that release (while they exist).")
@click.option("--router", "with_router", is_flag=True, help="The router's log too (HAProxy's).")
@common_long_file
def logs(ctx: Ctx, services: tuple[str, ...], follow: bool, tail: int | None, since: str | None,
         release: str | None, with_router: bool) -> None:
    """The logs of the live release's containers (every replica) and of the stateful
    services, each line prefixed with its container, as compose does (`web-1 (blue) | ...`).

    \b
      immutdock logs                 # everything the app runs now
      immutdock logs web -f          # follow web, across releases
      immutdock logs --tail 50 --router
      immutdock logs --release r7    # what r7's containers said (while they exist)

    With --json, one JSON object per line: container, service, color, release, line.
    """
    from immutdock.apply import logstream
    from immutdock.targets.ledger import parse_release_id
    from immutdock.targets.observe import observe

    app = ctx.load()
    known = set(app.services)
    for s in services:
        if s not in known:
            raise ConfigError("SERVICE", f"{app.name} has no service {s!r}", f"pick among {', '.join(sorted(known))}")
    if release is not None and parse_release_id(release) is None:
        raise ConfigError("--release", f"{release!r} is not a release id", "use rN, e.g. r3 (`immutdock history`)")
    after = logstream.since_epoch(since, time.time()) if since else None
    out = threading.Lock()
    with ctx.places(app) as fleet:
        def one(t: Target) -> logstream.Streams:
            host = "" if fleet.policy is None else f"{t.name} "

            def line(c: ContainerState, mark: str, text: str) -> None:
                from immutdock import labels as L

                with out:
                    if ctx.as_json:
                        click.echo(json.dumps({**({"host": t.name} if host else {}), "container": c.name,
                                               "service": c.service, "color": c.labels.get(L.COLOR),
                                               "release": c.labels.get(L.RELEASE), "line": text}))
                    else:
                        click.echo(f"{host}{mark:<16} | {text}")

            return logstream.stream(t, lambda: observe(t, app.name),
                                    lambda state, following: logstream.chosen(state, services, with_router, release,
                                                                              following),
                                    line, tail=tail, since=after, follow=follow)

        try:
            streams = fleet.each(one)
        except (KeyboardInterrupt, Interrupted):
            if not follow:
                raise
            return  # Ctrl-C is how a follow ends
    if any(s.broken for s in streams):  # `logs | head`: what reads it has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    problems = [p for s in streams for p in s.errors]
    for p in problems:
        ctx.warn(p)
    if problems:
        sys.exit(1)


def _one_place(ctx: Ctx, fleet: Fleet, command: str) -> Target:
    if len(fleet.targets) != 1:
        raise ConfigError("--target", f"{fleet.name} has {len(fleet.targets)} hosts and `{command}` runs in one",
                          "name one with --host ssh://USER@HOST")
    return fleet.targets[0]


def _argv(command: tuple[str, ...]) -> list[str]:
    """The command as given, without a leading `--` (what separates it from immutdock's options)."""
    return list(command[1:] if command[:1] == ("--",) else command)


def _tty(no_tty: bool) -> bool:
    return not no_tty and sys.stdin.isatty() and sys.stdout.isatty()


@click.command(name="exec", epilog=exits("N the command's own exit code", "1 no container to run it in; or " + ENGINE), context_settings={"ignore_unknown_options": True,
                                                             "allow_interspersed_args": False})
@click.argument("service", metavar="SERVICE")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED, metavar="COMMAND [ARG]...")
@click.option("--index", type=click.IntRange(min=1), default=None, metavar="N",
              help="The service's Nth replica (default: the first that runs).")
@click.option("-T", "no_tty", is_flag=True, help="No TTY, even when stdin is a terminal.")
@click.option("-i", "--interactive", is_flag=True, help="Pass stdin to the command (the default, as compose's exec).")
@click.option("-u", "--user", default=None, metavar="USER", help="Run as this user.")
@click.option("-w", "--workdir", default=None, metavar="DIR", help="Run in this folder.")
@common
def exec_command(ctx: Ctx, service: str, command: tuple[str, ...], index: int | None, no_tty: bool,
                 interactive: bool, user: str | None, workdir: str | None) -> None:
    """Run a command in a running container of the live release (or of a stateful service),
    whatever its color; stdin is passed to it, and immutdock exits with its exit code.

    \b
      immutdock exec web sh                 # a shell, with a TTY on a terminal
      immutdock exec db psql -U app
      echo 'select 1' | immutdock exec db psql -U app
      immutdock exec --index 2 web cat /app/VERSION
    """
    from immutdock.apply import operate
    from immutdock.gateways import attached
    from immutdock.targets.observe import observe

    app = ctx.load()
    with ctx.places(app) as fleet:
        target = _one_place(ctx, fleet, "exec")
        chosen = operate.pick(app, observe(target, app.name), service, index)
        tty = _tty(no_tty)
        host = target.colors.engine_of(chosen).base_url
        ctx.say(f"exec in {chosen.name} ({chosen.labels.get('io.immutdock.release') or service})")
        code = attached.attached(attached.exec_argv(host, chosen.id, _argv(command), interactive=True, tty=tty,
                                                    user=user, workdir=workdir))
    sys.exit(code)


@click.command(epilog=exits("N the command's own exit code", "1 the container could not be made; or " + ENGINE), context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("service", metavar="SERVICE")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[COMMAND [ARG]...]")
@click.option("-T", "no_tty", is_flag=True, help="No TTY, even when stdin is a terminal.")
@common
def run(ctx: Ctx, service: str, command: tuple[str, ...], no_tty: bool) -> None:
    """Run a one-off container of SERVICE: the live release's image and definition (its
    environment, networks and named volumes), removed when it ends; immutdock exits with its
    exit code. The way to run a migration or a console by hand. Stdin is passed to it.

    \b
      immutdock run web python manage.py migrate
      immutdock run -T web ./check.sh < input.txt
    """
    from immutdock.apply import operate
    from immutdock.targets.observe import observe

    app = ctx.load()
    if service not in set(app.services):
        raise ConfigError("SERVICE", f"{app.name} has no service {service!r}",
                          f"pick one of {', '.join(app.services)}")
    with ctx.places(app) as fleet:
        target = _one_place(ctx, fleet, "run")
        state = observe(target, app.name)
        project, model, notes = operate.run_model(app, state, service, remote=target.runtime.compose.host is not None)
        for note in notes:
            ctx.warn(note)
        target.colors.ensure_edge(app.name)
        ctx.say(f"running a one-off {service} container of {state.live_release}")
        code = target.runtime.compose.run_attached(project, model, service, _argv(command), tty=_tty(no_tty))
    sys.exit(code)

