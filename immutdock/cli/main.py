"""The `immutdock` command: its group, and the commands that need no place (build, init,
doctor); the others live by what they do (deploy, inspect, upkeep, volumes) and are added here.

Exit codes: 0 success (or nothing to do), 1 the operation failed and the previous release
is still serving, 2 bad input and nothing changed, 3 another release holds the lock."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from immutdock import __version__
from immutdock.cli.context import common, common_here, COMMON_FLAGS, COMMON_VALUED, Ctx, ENGINE, EPILOG, exits, fail, paint
from immutdock.errors import ConfigError, ImmutdockError
from immutdock.gateways import spawn


def hoisted(argv: list[str], groups: set[str]) -> list[str]:
    """`argv` with the options every command takes, given before the command (`immutdock
    --json status`, as compose takes them), moved after it (after a group's subcommand:
    `volumes ls`); `-f` becomes `--file` (the one that `logs -f` leaves to following). Anything
    else before the command is left where it is, for click to judge."""
    moved: list[str] = []
    i = 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if argv[i] in COMMON_FLAGS:
            moved.append(argv[i])
            i += 1
        elif name in COMMON_VALUED and eq:
            moved.append(f"{COMMON_VALUED[name]}={value}")
            i += 1
        elif name in COMMON_VALUED and i + 1 < len(argv):
            moved += [COMMON_VALUED[name], argv[i + 1]]
            i += 2
        else:
            break
    if not moved or i == len(argv) or argv[i].startswith("-"):
        return argv
    head, rest = argv[i:i + 1], argv[i + 1:]
    if head[0] in groups and rest and not rest[0].startswith("-"):
        head, rest = head + rest[:1], rest[1:]
    return head + moved + rest


# The commands that live by what they do, each imported only when it is asked for (a release
# does not import the code of logs or volumes): name -> (module of immutdock.cli, attribute).
ELSEWHERE = {"plan": ("deploy", "plan"), "release": ("deploy", "release"), "rollback": ("deploy", "rollback"),
             "heal": ("deploy", "heal"), "status": ("inspect", "status"), "history": ("inspect", "history"),
             "prune": ("upkeep", "prune"), "drift": ("inspect", "drift_command"), "unlock": ("inspect", "unlock"),
             "verify": ("inspect", "verify_command"), "volumes": ("volumes", "volumes"), "ps": ("operate", "ps"),
             "ls": ("operate", "ls_command"), "logs": ("operate", "logs"), "exec": ("operate", "exec_command"),
             "run": ("operate", "run"), "down": ("down", "down")}
GROUPS = {"volumes"}  # the commands that have commands of their own (`volumes ls`)


class _Main(click.Group):
    """click's own usage errors (unknown option, missing value, out of range) speak like every
    other bad input: one line naming the problem and where the help is, JSON with --json, exit 2.
    The options every command takes may come before the command too (`hoisted`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *ELSEWHERE})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in ELSEWHERE:
            module, attr = ELSEWHERE[cmd_name]
            self.add_command(getattr(importlib.import_module(f"immutdock.cli.{module}"), attr), cmd_name)
        return self.commands.get(cmd_name)

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:
        argv = hoisted(list(sys.argv[1:] if args is None else args), GROUPS)
        from immutdock.config.dockercontext import context_env

        try:  # the engine of the docker CLI's current context, for every client (compose included)
            if not {"--help", "-h", "--version"} & set(argv) and COMPLETE_VAR not in os.environ:
                spawn.warm()  # children started later are tied to this process with what it finds
                os.environ.update(context_env(os.environ))
        except ImmutdockError as exc:
            fail(Ctx(None, "--json" in argv, False), exc)
        try:
            return super().main(args=argv, prog_name=prog_name or "immutdock", standalone_mode=False, **extra)
        except click.ClickException as exc:
            named = next((a for a in argv if a in self.commands or a in ELSEWHERE), None)
            where = exc.ctx.command_path if isinstance(exc, click.UsageError) and exc.ctx and exc.ctx.parent \
                else " ".join(["immutdock"] + ([named] if named else []))
            message = " ".join(exc.format_message().split()).rstrip(".")
            fail(Ctx(None, "--json" in argv, False), ConfigError("", message, f"see `{where} --help`"), code=2)
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

    \b
    The options every command takes (-f, --json, --profile, --target, ...) go
    after the command or before it: `immutdock --json status`.
    """


@main.command(epilog=exits("0 built, or cached", "1 a build failed; or " + ENGINE))
@common_here
def build(ctx: Ctx) -> None:
    """Build every service's image, tagged by the hash of its inputs.

    Same inputs, same tag: an image already on the engine is reused ("cached").
    The hash covers the build context after .dockerignore (paths, bytes, executable
    bits, symlinks), the Dockerfile, build args, target, additional contexts and the
    image IDs of the FROM images - not modification times or where the checkout is.
    A service's project binds are baked over its image (their files and modes hashed too).
    """
    from immutdock.apply.bake import bake_images
    from immutdock.apply.build import apply_images, plan_images
    from immutdock.gateways.compose import Compose
    from immutdock.gateways.engine import Engine

    app = ctx.load(ahead=())  # no Fleet: the local engine's own builder
    engine = Engine()
    specs = {s.name: s.build for s in app.services.values() if s.build}
    plans = bake_images(plan_images(app.name, specs, engine), app, engine)  # project binds baked over the images
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


@main.command(epilog=exits("0 written (or printed)", "2 the file has an x-immutdock block already"))
@click.option("--print", "only_print", is_flag=True, help="Print the block instead of writing it.")
@common_here
def init(ctx: Ctx, only_print: bool) -> None:
    """Write the inferred x-immutdock block into the compose file, for review.

    Appends the block at the end of the file, each setting under a comment saying why it
    was inferred (the roles `immutdock plan` shows); nothing else in the file changes,
    comments and order included. Settings in the block are used as they are, so a later
    change to the file no longer moves them. Refuses (exit 2) when the file has a block.
    """
    from immutdock.config import compose_file as config, infer
    from immutdock.config.settings import BLOCK

    app = ctx.load(ahead=())  # nothing is released: no Fleet
    if BLOCK in config.read_yaml(app.compose_file):
        raise ConfigError(BLOCK, f"{app.compose_file.name} already has an x-immutdock block",
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


@main.command(epilog=exits("0 everything is there, in a version immutdock can drive", "1 something is missing or too old "
                                                                                   "(each says how to get it)"))
@common
def doctor(ctx: Ctx) -> None:
    """Check that this machine can release: the engine, the compose and buildx plugins
    (each in a version immutdock can drive) and immutdock's own files.

    With --target NAME (a target of the compose file) or --host, each of its SSH hosts too: it
    is reached and its host key known, its engine answers in a version immutdock can drive, and
    its engine's storage has room. Says what is missing and how to get it. Exits 0 when all is
    well, 1 otherwise; needs a compose file only to read --target's hosts.
    """
    from immutdock.cli.doctor import host_checks, run_checks
    from immutdock.targets.hosts import ssh_hosts

    checks = run_checks()
    if ctx.target_name or ctx.hosts:
        policy = ctx.policy(ctx.load() if ctx.target_name else None)  # type: ignore[arg-type]
        assert policy is not None
        checks += host_checks(ssh_hosts(policy), ctx.identity, ctx.accept_new)
    if ctx.as_json:
        click.echo(json.dumps([c.as_json() for c in checks], indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            mark = paint("ok  ", "green") if c.ok else paint("FAIL", "red")
            click.echo(f"{mark} {c.name:<{width}} {c.found}" + (f"\n     fix: {c.fix}" if c.fix else ""))
    sys.exit(0 if all(c.ok for c in checks) else 1)


@main.command(epilog=exits("0 the versions are printed, also when a part cannot be asked (it says why)"))
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON on stdout (for CI).")
def version(as_json: bool) -> None:
    """Show the versions of immutdock and of what it drives: the Docker engine (DOCKER_HOST's),
    the compose and buildx plugins.

    A part that cannot be asked says why instead of a version. Exits 0 either way:
    `immutdock doctor` judges whether the versions can release.
    """
    from immutdock.cli.doctor import run_checks

    found = {c.name: c.found for c in run_checks() if not c.name.endswith("/")}
    if as_json:
        click.echo(json.dumps(found, indent=2))
    else:
        for name, text in found.items():
            click.echo(f"{name:<10} {text}")


@main.command(epilog=exits("0 the script is printed"))
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the script that completes immutdock's commands and options in SHELL.

    \b
    Load it from your shell's start-up file:
      bash:  echo 'eval "$(immutdock completion bash)"' >> ~/.bashrc
      zsh:   echo 'eval "$(immutdock completion zsh)"' >> ~/.zshrc
      fish:  immutdock completion fish > ~/.config/fish/completions/immutdock.fish
    """
    from click.shell_completion import get_completion_class

    found = get_completion_class(shell)
    assert found is not None  # click knows the three shells the choice allows
    click.echo(found(main, {}, "immutdock", COMPLETE_VAR).source())


COMPLETE_VAR = "_IMMUTDOCK_COMPLETE"  # the variable the scripts set to ask immutdock for completions


if __name__ == "__main__":  # pragma: no cover
    main()
