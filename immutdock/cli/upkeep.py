"""Upkeep of what releases leave: prune (release images beyond `keep`, archived first when asked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import click

from immutdock.cli.context import common, Ctx, ENGINE, exits, host_folder, place_folder, writable


@click.command(epilog=exits("0 pruned, or nothing to prune", "1 failed; or " + ENGINE, "3 a release holds the lock"))
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
    from immutdock.apply.prune import prune_place

    app = ctx.load()
    policy = ctx.policy(app)
    if archive is not None:
        writable(archive, "--archive")
        for host in policy.hosts if policy is not None else ():
            writable(host_folder(archive, host), "--archive")
    with ctx.places(app) as fleet, fleet.locked("prune"):  # a release in progress may still need its images
        found = fleet.each(lambda t: prune_place(fleet.deployer(t), keep, place_folder(fleet, archive, t)
                                                 if archive else None,
                                                 lambda w, d, n: ctx.bar(fleet.named(t, w), d, n)))
    ctx.emit_each(fleet, found, lambda r: r, _prune_lines)


def _prune_lines(result: Mapping[str, Any]) -> list[str]:
    lines = [f"archived {a['release']} to {a['archive']}" for a in result.get("archived", [])]
    lines += [f"removed {r}" for r in result["removed_images"]]
    if result["compacted_records"]:
        lines.append(f"compacted the records of {', '.join(result['compacted_records'])}")
    lines += [f"removed {name}, which no release left to roll back to runs with" for name in result["removed_objects"]]
    return lines or ["nothing to prune"]
