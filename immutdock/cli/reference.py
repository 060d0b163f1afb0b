"""The commands part of docs/reference.md, made from the commands themselves: each command's
usage, summary, own options and exit codes (tests/unit/test_reference.py holds the document
to it). `python -m immutdock.cli.reference` prints it."""

from __future__ import annotations

from typing import Iterator

import click

# The options `common` gives (described once, before the commands), by their first name.
SHARED = {"-f", "--file", "--json", "-v", "--profile", "--target", "--host", "--identity", "--accept-new-host-key",
          "--no-color", "-p", "-h"}


def _walk(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        yield f"{prefix} {name}", cmd
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, f"{prefix} {name}")


def _option(param: click.Parameter) -> str:
    names = ", ".join(f"`{n}`" for n in param.opts)
    if getattr(param, "is_flag", False):
        metavar = ""
    elif isinstance(param.type, click.Choice) and not param.metavar:
        metavar = " {" + "/".join(map(str, param.type.choices)) + "}"
    else:
        metavar = f" {param.metavar or (param.name or '').upper()}"
    return f"- {names}{metavar}: {' '.join((getattr(param, 'help', '') or '').split())}"


def commands_markdown() -> str:
    from immutdock.cli.main import main

    out: list[str] = []
    for path, cmd in _walk(main, "immutdock"):
        ctx = click.Context(cmd, info_name=path.split()[-1])
        usage = " ".join([path, *cmd.collect_usage_pieces(ctx)])
        out += [f"### `{path}`", "", f"`{usage}`", "", " ".join((cmd.help or "").split("\n\n")[0].split()), ""]
        own = [p for p in cmd.params if isinstance(p, click.Option) and p.opts[0] not in SHARED]
        shared = [p.opts[-1] for p in cmd.params if isinstance(p, click.Option) and p.opts[0] in SHARED]
        out += [_option(p) for p in own]
        if shared:
            out.append(f"- and {', '.join(f'`{n}`' for n in shared)} (see above)")
        if own or shared:
            out.append("")
        if cmd.epilog and "Exit codes:" in cmd.epilog:
            codes = [line.strip() for line in cmd.epilog.split("Exit codes:")[1].splitlines() if line.strip()]
            out += ["Exit codes: " + "; ".join(f"`{c.split()[0]}` {c.split(None, 1)[1]}" for c in codes), ""]
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    print(commands_markdown(), end="")
