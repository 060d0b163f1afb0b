"""`immutdock down`: take the app away from every place of the command (immutdock.apply.teardown),
its named volumes kept unless --volumes, and then only once a fresh backup of each verified."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import click

from immutdock.cli.context import common, Ctx, exits, writable
from immutdock import labels as L
from immutdock.errors import ConfigError, LockHeld

if TYPE_CHECKING:
    from immutdock.apply.backup import Volumes
    from immutdock.config.model import App
    from immutdock.plan.state import AppState
    from immutdock.targets.base import Target

    Place = tuple[str | None, Volumes | None, Target]


@click.command(epilog=exits("0 removed, or nothing to remove", "1 a removal failed (what is left is named)", "2 another command holds the lock"))
@click.option("--volumes", "with_volumes", is_flag=True,
              help="Also remove the app's named volumes (its data), each only after a fresh backup of it "
                   "into --backup-to was restored into a scratch volume and checked.")
@click.option("--backup-to", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
              help="The folder of those backups (needed with --volumes).")
@click.option("--keep-history", is_flag=True,
              help="Keep the release records (`history` still lists them; the next release continues their numbers).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (needed when stdin is not a terminal).")
@common
def down(ctx: Ctx, with_volumes: bool, backup_to: Path | None, keep_history: bool, yes: bool) -> None:
    """Stop and remove everything the app has on the target: both colors, the router, the
    stateful services, one-off containers, the release records, the lock, its networks,
    secrets and configs, and its image tags. Named volumes stay unless --volumes.

    \b
      immutdock down                                    # asks first; volumes stay
      immutdock down --yes --keep-history               # history stays; next release continues it
      immutdock down --volumes --backup-to ./backups -y # data too, after a verified backup

    Refused (exit 2, nothing changed) while another command holds the app's lock. A second
    `down` finds nothing and exits 0; after it, a release starts again from r1 (with
    --keep-history, from the next number).
    """
    from immutdock.apply import teardown
    from immutdock.targets.observe import observe

    app = ctx.load()
    if with_volumes and backup_to is None:
        raise ConfigError("--volumes", "removing the app's volumes needs a backup of each first",
                          "add --backup-to DIR (or drop --volumes to keep them)")
    if backup_to is not None and not with_volumes:
        raise ConfigError("--backup-to", "is only used with --volumes", "add --volumes, or drop --backup-to")
    if backup_to is not None:
        writable(backup_to, "--backup-to")
    volumes = [(key, app.volume_name(key)) for key in app.volumes]
    picked = volumes if with_volumes else []
    with _places(ctx, app, with_volumes) as places:
        states = [observe(t, app.name) for _h, _o, t in places]
        data = [any(_ours(app, t, n) for _k, n in picked) for _h, _o, t in places]
        if not any(_anything(s, keep_history) for s in states) and not any(data):
            _emit(ctx, app, places, [{"outcome": "nothing to remove", "removed": teardown.Removed().as_json(),
                                      "backups": [], "kept_volumes": []} for _ in places])
            return
        _confirm(ctx, app, places, states, with_volumes, keep_history, yes)
        results = _take_down_all(ctx, app, places, picked, volumes, backup_to, keep_history)
    _emit(ctx, app, places, results)


def _take_down_all(ctx: Ctx, app: App, places: list[Place], picked: list[tuple[str, str]],
                   volumes: list[tuple[str, str]], backup_to: Path | None, keep_history: bool) -> list[dict[str, Any]]:
    """Every place's lock taken, every volume found able to be backed up, then each place taken
    down (immutdock.apply.teardown); a result per place."""
    from immutdock.apply import teardown
    from immutdock.targets.observe import observe

    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        for _h, _o, target in places:  # every place's lock before anything changes on any
            try:
                stack.enter_context(target.ledger.lock(app.name, "down", ctx.warn))
            except LockHeld as exc:  # nothing changed: bad timing, not a failure
                raise ConfigError("", exc.message, exc.hint) from None
        states = [observe(t, app.name) for _h, _o, t in places]  # again, under the locks
        present = [[(k, n) for k, n in picked if _ours(app, t, n)] for _h, _o, t in places]
        placed = [_checked(app, place, found) for place, found in zip(places, present)]  # before any removal
        for (host, _ops, target), state, found, at in zip(places, states, present, placed):
            say = ctx.say if host is None else (lambda m, h=host: ctx.say(f"{h}: {m}"))
            rows: list[dict[str, Any]] = []

            def back_up_now(host: str | None = host, target: Target = target, found: Any = found,
                            at: Any = at, say: Any = say) -> None:
                """Once nothing serves and no color writes: each volume backed up and verified."""
                from immutdock.cli.volumes import back_up

                say(f"backing up {', '.join(k for k, _n in found)} into {backup_to} before removing")
                rows.extend(back_up(ctx, app, host, target, at, found, backup_to, and_verify=True))

            removed = teardown.take_down(target, state, [(n, at[host, k].engine) for k, n in found],
                                         keep_history, say, back_up_now if found else None)
            kept = sorted({n for _k, n in volumes if _ours(app, target, n, anyone=True)}
                          | set(_labelled_volumes(app, target)))
            results.append({"outcome": "removed" if not removed.nothing() else "nothing to remove",
                            "removed": removed.as_json(), "backups": rows, "kept_volumes": kept})
    return results


@contextlib.contextmanager
def _places(ctx: Ctx, app: App, with_volumes: bool) -> Iterator[list[Place]]:
    """(host name or None for the local engine, its volume operations with --volumes, its Target)."""
    if with_volumes:
        from immutdock.cli.volumes import volume_ops

        with volume_ops(ctx, app) as found:
            yield [(h, o, t) for h, o, t in found]
        return
    with ctx.places(app) as fleet:
        yield [(None if fleet.policy is None else t.name, None, t) for t in fleet.targets]


def _anything(state: AppState, keep_history: bool) -> bool:
    """Whether `down` has anything to remove of the app (a lock a gone command left counts)."""
    return bool((state.records and not keep_history) or state.containers)


def _checked(app: App, place: Place, found: list[tuple[str, str]]) -> dict[tuple[str | None, str], Volumes]:
    """Each volume's backup operations where it is, every one found able to be backed up."""
    host, ops, target = place
    if not found or ops is None:
        return {}
    from immutdock.cli.volumes import checked_backups

    return checked_backups(app, [(host, ops, target)], found)


def _labelled_volumes(app: App, target: Target) -> list[str]:
    """The volumes immutdock made for the app that the file names no more (kept: said)."""
    named = {app.volume_name(k) for k in app.volumes}
    return sorted({str(v["Name"]) for e in target.runtime.nodes.values()
                   for v in e.volumes(**{L.APP: app.name, L.ROLE: "volume"})} - named)


def _ours(app: App, target: Target, name: str, anyone: bool = False) -> bool:
    """Whether a volume of that name is on a node of the target and immutdock made it for the
    app (an external volume, or another's, is never removed); `anyone`: made by whoever."""
    for _node, engine in target.colors.volume_nodes(app.name, name, ()):
        labels = engine.volume_labels(name)
        if labels is not None and (anyone or labels.get(L.APP) == app.name):
            return True
    return False


def _confirm(ctx: Ctx, app: App, places: list[Place], states: list[AppState], with_volumes: bool,
             keep_history: bool, yes: bool) -> None:
    """Say what goes and ask (stdin a terminal), unless --yes; refused without a terminal."""
    if yes:
        return
    where = ", ".join(t.name for _h, _o, t in places)
    containers = sum(len([c for c in s.containers if c.labels.get(L.ROLE) != "lock"]) for s in states)
    records = max(len(s.records) for s in states)
    what = (f"down removes {app.name} from {where}: {containers} container(s), its networks and image tags"
            + ("" if keep_history else f", and the records of {records} release(s)")
            + ("; its volumes too, after a verified backup" if with_volumes else "; its volumes stay"))
    if not sys.stdin.isatty():
        raise ConfigError("--yes", f"{what}, and stdin is not a terminal to ask", "add --yes to go ahead")
    click.echo(what, err=True)
    if not click.confirm("go ahead?", default=False, err=True):
        raise ConfigError("", "down was not confirmed", "nothing changed")


def _emit(ctx: Ctx, app: App, places: list[Place], results: list[dict[str, Any]]) -> None:
    def lines(r: dict[str, Any]) -> list[str]:
        if r["outcome"] == "nothing to remove":
            return [f"nothing to remove: {app.name} has nothing here"]
        gone = r["removed"]
        found = [f"removed {app.name}: {len(gone['containers'])} container(s), {len(gone['networks'])} network(s), "
                 f"{len(gone['images'])} image tag(s), {gone['records']} record(s)"]
        found += [f"backed up {b['volume']} to {b['archive']} (verified)" for b in r["backups"]]
        found += [f"removed volume {v}" for v in gone["volumes"]]
        found += [f"kept volume {v}" for v in r["kept_volumes"]]
        return found

    if places[0][0] is None:
        ctx.emit({"app": app.name, **results[0]}, lambda: [click.echo(line) for line in lines(results[0])])
        return
    ctx.emit({"app": app.name, "hosts": [{"host": h, **r} for (h, _o, _t), r in zip(places, results)]},
             lambda: [click.echo(f"{h}  {line}") for (h, _o, _t), r in zip(places, results) for line in lines(r)])
