"""`immutdock volumes`: back up, restore and check the app's named volumes, on every place."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import click

from immutdock.cli.context import common, Ctx, exits, host_folder, writable
from immutdock.errors import ConfigError

if TYPE_CHECKING:
    from immutdock.apply.backup import Manifest, Volumes
    from immutdock.targets.base import Target
    from immutdock.config.model import App

# -- volumes -----------------------------------------------------------------------------------
VOLUMES_EPILOG = exits("0 ok", "1 failed (also: a backup that does not hold what its manifest says)",
                       "3 a release or another volumes command holds the app's lock")


@click.group(epilog=VOLUMES_EPILOG)
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
    and verify write into one engine: name its host with --host. On a Docker Swarm target
    (backups in DIR/TARGET/) a volume is used on the node its stateful service is kept on,
    that service scaled to no task and back for a copy; a volume only swapped services mount
    is per node there, and refused.
    """


_TO = click.option("--to", "folder", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
                   help="The folder of the backups (default: $XDG_DATA_HOME or ~/.local/share, then "
                        "immutdock/backups/APP).")


def _backups_folder(app: App, folder: Path | None) -> Path:
    if folder is not None:
        return folder
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "immutdock" / "backups" / app.name


@contextlib.contextmanager
def volume_ops(ctx: Ctx, app: App, one: bool = False) -> Iterator[list[tuple[str | None, Volumes, Target]]]:
    """(host name or None for the local engine, backup.Volumes, its Target) of each place the
    command runs on: the local engine, each host of --target, or its swarm (one place; each
    operation runs on the node that holds its volume: Volumes.at). Every engine that may hold a
    volume gets the helper image built here (delivered as release images are: only the layers
    it lacks). `one`: a command that writes into one engine."""
    from immutdock.apply import backup
    from immutdock.gateways.compose import Compose
    from immutdock.targets import ship

    policy = ctx.policy(app)
    if one and policy is not None and policy.swarm is None and len(policy.hosts) != 1:
        raise ConfigError("--target", f"{policy.name} has {len(policy.hosts)} hosts and a backup is one volume's",
                          "name one with --host")
    compose = Compose()
    try:
        helper = backup.helper_image(ctx.engine, compose, ctx.progress)
    finally:
        compose.close()
    with ctx.places(app) as fleet:
        away = {name: engine for t in fleet.targets if not t.images.builds_here
                for name, engine in t.runtime.nodes.items()}
        if away:  # the helper is shipped, never pushed to the target's registry
            ship.ship(fleet.builder, away, [helper], ctx.shipping)
        yield [(None if fleet.policy is None else t.name,
                backup.Volumes(t.engine, app, helper, lambda m, t=t: ctx.say(fleet.named(t, m)),
                               lambda w, d, n, t=t: ctx.bar(fleet.named(t, w), d, n), t.colors, t.engine.name), t)
               for t in fleet.targets]


def _read_backup(path: Path) -> tuple[Manifest, Path]:
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
    with volume_ops(ctx, app) as engines:
        for host, ops, target in engines:
            state = observe(target, app.name)
            kept_in = host_folder(where, host)
            for key, name in backup.pick_volumes(app, ()):
                kept = backup.kept(kept_in, app.name, key)
                try:
                    homes, problem = ops.homes(name) or [(None, None)], None
                except ConfigError as exc:  # said on its row: the other volumes are still listed
                    homes, problem = [(None, None)], exc.message
                for node, engine in homes:
                    rows.append({"host": host, "volume": key, "engine_volume": name, "node": node, "problem": problem,
                                 "exists": engine is not None and engine.volume_exists(name),
                                 "mounted_by": [c.name for c in backup.users(state.containers, name)],
                                 "dump": bool(app.settings.volumes.get(key)),
                                 "backups": [str(backup.archive_of(p)) for p in kept]})

    def human() -> None:
        for r in rows:
            latest = f"{len(r['backups'])} backup(s), newest {Path(r['backups'][-1]).name}" if r["backups"] \
                else "no backup"
            click.echo((f"{r['host']}  " if r["host"] else "")
                       + (f"{r['node']}  " if r["host"] and r["node"] and r["node"] != r["host"] else "")
                       + f"{r['volume']:<16} {r['engine_volume']:<32} "
                       f"{'exists' if r['exists'] else 'not created yet':<16} "
                       f"{'mounted by ' + ', '.join(r['mounted_by']) if r['mounted_by'] else 'not mounted':<40} "
                       f"{latest}" + (f"  ({r['problem']})" if r["problem"] else ""))
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

    app = ctx.load()
    picked = backup.pick_volumes(app, names)
    where = _backups_folder(app, folder)
    writable(where, "--to")
    rows = []
    with volume_ops(ctx, app) as engines:
        placed = checked_backups(app, engines, picked)
        for host, _ops, target in engines:
            with target.ledger.lock(app.name, "volumes backup", ctx.warn):
                rows += back_up(ctx, app, host, target, placed, picked, where, and_verify)

    def human() -> None:
        from immutdock.targets.ship import size_text

        for r in rows:
            what = f"dumped by {r['dumped_by']}, which kept running" if r["kind"] == "dump" else f"{r['files']} files"
            click.echo((f"{r['host']}: " if r["host"] else "")
                       + f"backed up {r['volume']} to {r['archive']} ({size_text(r['size'])}, {what}"
                       + (f", {', '.join(r['stopped'])} stopped meanwhile" if r["stopped"] else "")
                       + (", verified" if r["verified"] is not None else "") + ")")
    ctx.emit({"app": app.name, "outcome": "backed up", "backups": rows}, human)


def checked_backups(app: App, engines: list[tuple[str | None, Volumes, Target]],
                    picked: list[tuple[str, str]]) -> dict[tuple[str | None, str], Volumes]:
    """Each volume's operations where it is ((host, volume) -> Volumes), once every volume is
    found there and the app's, and each dump can run: before any copy."""
    from immutdock.targets.observe import observe

    placed: dict[tuple[str | None, str], Volumes] = {}
    for host, ops, target in engines:
        containers = observe(target, app.name).containers
        for key, name in picked:
            at = placed[host, key] = ops.at(key, name)
            if not at.own(name, key):
                raise ConfigError(key, f"volume {name} does not exist {f'on {host} ' if host else ''}yet",
                                  "release the app once; it creates its volumes")
            if key in app.settings.volumes:
                at.runs_dump(key, app.settings.volumes[key], containers, name)
    return placed


def back_up(ctx: Ctx, app: App, host: str | None, target: Target, placed: dict[tuple[str | None, str], Volumes],
            picked: list[tuple[str, str]], where: Path, and_verify: bool) -> list[dict[str, Any]]:
    """Back up the picked volumes of one place into `where` (its host's folder of it), the
    app's lock held by the caller; a row per backup."""
    from immutdock.apply import backup
    from immutdock.targets.observe import observe

    into = host_folder(where, host)
    writable(into, "--to")
    rows = []
    state = observe(target, app.name)
    release = state.live_record.id if state.live_record else None
    for key, name in picked:
        t0 = time.monotonic()
        at = placed[host, key]
        made = at.backup(key, name, state.containers, release, into)
        if made.stopped:  # started again: a swarm's are new tasks
            state = observe(target, app.name)
        row = {"host": host, "node": at.node, "volume": key, "engine_volume": name,
               "archive": str(into / made.archive),
               "manifest": str(backup.manifest_of(into / made.archive)), "sha256": made.sha256,
               "size": made.size, "tar_bytes": made.tar_bytes, "files": len(made.files),
               "kind": made.kind, "dumped_by": made.service, "stopped": list(made.stopped),
               "release": release, "seconds": round(time.monotonic() - t0, 2), "verified": None}
        if and_verify:
            at.verify(made, into / made.archive, state.containers)
            row["verified"] = True
        rows.append(row)
    return rows


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
    from immutdock.targets.observe import observe

    app = ctx.load()
    manifest, archive = _read_backup(backup_path)
    if into is not None and not _VOLUME_NAME.match(into):
        raise ConfigError("--into", f"{into!r} is not a volume name", "use letters, digits, '_', '.' or '-'")
    with volume_ops(ctx, app, one=True) as engines:
        host, ops, target = engines[0]
        with target.ledger.lock(app.name, "volumes restore", ctx.warn):
            at = ops.for_restore(manifest, into)
            state = observe(target, app.name)
            t0 = time.monotonic()
            volume, made = at.restore(manifest, archive, into, state.containers, force)
    data = {"app": app.name, "host": host, "node": at.node, "outcome": "restored", "backup": str(archive),
            "volume": volume, "created": made, "kind": manifest.kind, "files": len(manifest.files),
            "release": manifest.release, "created_at": manifest.created,
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
    from immutdock.apply.backup_manifest import DUMPED
    from immutdock.targets.observe import observe

    app = ctx.load()
    manifest, archive = _read_backup(backup_path)
    with volume_ops(ctx, app, one=True) as engines:
        _host, ops, target = engines[0]
        at = ops.at(manifest.volume, app.volume_name(manifest.volume) if manifest.volume in app.volumes
                    else manifest.engine_volume, anywhere=manifest.kind != DUMPED)
        files = at.verify(manifest, archive, observe(target, app.name).containers)
    data = {"app": app.name, "outcome": "verified", "backup": str(archive), "kind": manifest.kind, "files": files,
            "sha256": manifest.sha256}
    how = f"loaded into a copy of {manifest.service}" if manifest.kind == "dump" else \
        f"{files} files as in its manifest"
    ctx.emit(data, lambda: click.echo(f"{archive.name}: restored into a scratch volume, {how}"))
