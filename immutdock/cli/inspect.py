"""Commands that read what runs (and free what a dead holder left): status, history, drift,
verify, unlock. Each runs on every place of the command, the same way."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Mapping

import click

from immutdock.cli.context import common, Ctx, ENGINE, exits, paint, table

if TYPE_CHECKING:
    from immutdock.apply.fleet import Fleet
    from immutdock.apply.release import Deployer
    from immutdock.apply.router import BackendStats
    from immutdock.config.model import App
    from immutdock.targets.base import Target
    from immutdock.targets.observe import AppState


@click.command(epilog=exits("0 the app serves", "1 it does not (no live color, or its router or live color is down); or "
                                                 + ENGINE, "3 with --reap: a release holds the lock"))
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
    with ctx.places(app) as fleet:
        def one(t: Target) -> dict[str, Any]:
            state, stats = ctx.prefetched(app, gather, t)
            if reap:  # each place under its own lock: one a release holds is left as it is
                state, stats = _reap(ctx, fleet.deployer(t, hold_lock=True), state, stats,
                                     "" if fleet.policy is None else f"{t.name}: ")
            return describe(app, state, stats)

        reports = fleet.each(one)
    problems = _status_emit(ctx, app, fleet, reports)
    if problems:
        where = "does not serve" if fleet.policy is None else f"on {fleet.name}"
        click.echo(paint(f"error: {app.name} {where}: {problems[0]}", "red"), err=True)
        sys.exit(1)


def _status_emit(ctx: Ctx, app: App, fleet: Fleet, reports: list[dict[str, Any]]) -> list[str]:
    """Say the status of each place (a fleet's also says the hosts it left behind); the
    problems that make the app not serve."""
    from immutdock.apply.fleet import drift
    from immutdock.targets.ledger import parse_release_id

    if fleet.policy is None:
        ctx.emit(reports[0], lambda: click.echo(_status_text(reports[0])))
        _left_over(ctx, app, reports[0])
        return [reports[0]["problem"]] if reports[0]["problem"] else []
    hosts = [{"host": t.name, **r} for t, r in zip(fleet.targets, reports)]
    apart = drift({h["host"]: (parse_release_id(h["live_release"] or "") or 0, h["images"])
                   for h in hosts if h["live_color"]})
    problems = [f"{h['host']}: {h['problem']}" for h in hosts if h["problem"]]
    if apart:
        problems.append(f"{', '.join(apart)} serve{'s' if len(apart) == 1 else ''} other images than the newest release "
                        f"on {fleet.name} (the fleet drifted apart); `immutdock release --target {fleet.name}` "
                        "brings every host to the file's release")

    def human() -> None:
        for line in table([["HOST", "LIVE", "COLOR", "ROUTER", "STATE"]]
                          + [[h["host"], h["live_release"] or "-", h["live_color"] or "-", h["router"]["status"],
                              ("DRIFTED " if h["host"] in apart else "") + (h["problem"] or "serving")]
                             for h in hosts]):
            click.echo(line)

    ctx.emit({"target": fleet.name, "hosts": hosts, "drift": apart, "problem": "; ".join(problems) or None}, human)
    for h in hosts:
        _left_over(ctx, app, h, f"{h['host']}: ", f" --target {fleet.name}")
    return problems


def _reap(ctx: Ctx, deployer: Deployer, state: AppState, stats: BackendStats | None,
          prefix: str = "") -> tuple[AppState, BackendStats | None]:
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
    return gather(deployer.target, deployer.app.name) if reaped.colors or reaped.recreated else (state, stats)


def _left_over(ctx: Ctx, app: App, report: Mapping[str, Any], prefix: str = "", where: str = "") -> None:
    """Warn of the colors an interrupted release left on one engine (`where`: the options that
    name it again, e.g. " --target prod")."""
    for color in report["half_made"]:
        ctx.warn(f"{prefix}{app.name}-{color} exists but is not live (a release in progress, or one that was "
                 f"interrupted); `immutdock status --reap{where}` or the next release removes it")
    for old in report["not_retired"]:
        ctx.warn(f"{prefix}{app.name}-{old['color']} still runs {old['release']}, the release before "
                 f"{report['live_release']}: traffic left it, but it was not retired (the release was interrupted "
                 f"after its switch); `immutdock status --reap{where}` or the next release retires it")


def _status_text(report: dict[str, Any]) -> str:
    lines = [f"app           {report['app']}",
             f"live          {report['live_release'] or '-'} on {report['live_color'] or '-'}",
             f"url           {report['url'] or '-'}",
             f"router        {report['router']['status']}"
             + (f", {report['router']['up']} server(s) up" if report['router'].get('up') is not None else "")]
    if report["containers"]:
        lines.append("")
        lines += table([["ROLE", "CONTAINER", "STATUS", "HEALTH", "IMAGE"]]
                       + [[c["role"], c["name"], c["status"], c["health"] or "-", c["image"]]
                          for c in report["containers"]])
    if report["in_progress"]:
        lines.append(f"in progress   {report['in_progress']}")
    for cut in report["interrupted"]:
        lines.append(f"interrupted   {cut['release']}, killed {'after' if cut['live'] else 'around'} its switch "
                     "(`immutdock status --reap` or the next release settles its record)")
    if report["recreating"]:
        lines.append(f"interrupted   the recreate of {', '.join(report['recreating'])} "
                     "(`immutdock status --reap` or the next release finishes it)")
    return "\n".join(lines)


@click.command(epilog=exits("0 ok", "1 " + ENGINE))
@common
def history(ctx: Ctx) -> None:
    """Every release and rollback: id, time, image tags, git revision, outcome.

    Records are kept forever; "ok, pruned" marks a release whose images `prune` removed
    (it can no longer be rolled back to)."""
    from immutdock.targets.observe import records

    app = ctx.load(prefetch=records)
    with ctx.places(app) as fleet:
        found = fleet.each(lambda t: [r.summary() for r in ctx.prefetched(app, records, t)])
    ctx.emit_each(fleet, found, lambda rows: rows, lambda rows: _history_lines(app, rows),
                  row=lambda rows: {"releases": rows})


def _revision(git: str | None) -> str:
    """A record's git revision, short, with its uncommitted mark."""
    if not git:
        return "-"
    sha, mark, _ = git.partition("_")
    return sha[:12] + ("_" + git.partition("_")[2] if mark else "")


def _history_lines(app: App, rows: list[dict[str, Any]]) -> list[str]:
    """The records as an aligned table with a header; why a release failed in its last column."""
    if not rows:
        return [f"{app.name} has no releases yet"]
    cells = [["RELEASE", "CREATED", "KIND", "OUTCOME", "GIT", "IMAGES", "WHY"]]
    for r in rows:
        outcome = "ok, pruned" if r["compacted"] else r["outcome"]
        kind = r["kind"] + (f" of {r['source']}" if r["source"] else "")
        why = "" if r["outcome"] == "ok" else " ".join(str(r["message"] or "").split())
        images = " ".join(sorted(r["images"].values())) or "-"
        cells.append([r["release"], r["created"], kind, outcome, _revision(r["git"]),
                      images + (f" (profiles: {','.join(r['profiles'])})" if r["profiles"] else ""), why or "-"])
    return table(cells)



@click.command(name="drift", epilog=exits("0 no drift", "1 something drifted; or " + ENGINE))
@click.option("--strict", is_flag=True, help="Runtime writes are drift too (exit 1): files added to a container's "
                                             "layer, outside its volumes, tmpfs and x-immutdock.drift.ignore.")
@common
def drift_command(ctx: Ctx, strict: bool) -> None:
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
      filesystem  a file of the container's image changed or deleted (`docker diff`), outside
                  its volumes, binds, tmpfs and runtime folders (/run, /tmp, ...): a snowflake
    \b
    Also reported, and no drift unless --strict:
      runtime-write  files added to a container's layer at run time (a cache, uploads) and
                     logs written under /var/log, with the folders to declare as a volume
                     or tmpfs (or accept them in x-immutdock.drift.ignore: [GLOB, ...])
    What the engine adds (the init of `init: true`, /etc/hosts, mount points) is never reported.
    With --target, each host is compared with its own live release.
    """
    app = ctx.load()
    with ctx.places(app) as fleet:
        reports = fleet.each(lambda t: drift_report(fleet.deployer(t), app, strict))
    drifted = any(r["outcome"] == "drift" for r in reports)
    ctx.emit_each(fleet, reports, lambda r: r, _drift_lines, after={"outcome": "drift" if drifted else "no drift"})
    sys.exit(1 if drifted else 0)


def drift_report(deployer: Deployer, app: App, strict: bool = False) -> dict[str, Any]:
    """What drifted on the deployer's place, as `drift --json` says it: every finding (runtime
    writes too), the outcome "drift" when one of them is drift (a runtime write only when
    `strict`)."""
    from immutdock.apply import drift
    from immutdock.targets.observe import observe

    t0 = time.monotonic()
    state = observe(deployer.target, app.name)
    expected = drift.expect(app, state, deployer.engine, deployer.redactor(state))
    found = drift.findings(expected, state.containers, drift.look(deployer.target.colors, state.containers))
    drifted = any(f.drifted(strict) for f in found)
    return {"app": app.name, "release": expected.release, "color": expected.color, "strict": strict,
            "outcome": "drift" if drifted else "no drift",
            "drift": [{**f.as_json(), "drifted": f.drifted(strict)} for f in found],
            "seconds": round(time.monotonic() - t0, 3)}


def _drift_lines(report: Mapping[str, Any]) -> list[str]:
    from immutdock.apply.drift import Finding

    found = [Finding.from_json(f) for f in report["drift"]]
    head = [] if report["outcome"] == "drift" else [f"no drift ({report['release'] or 'nothing released'})"]
    return head + [f.text() for f in found]


@click.command(epilog=exits("0 unlocked, or no lock was held", "1 " + ENGINE))
@click.option("--force", is_flag=True, help="Remove the lock even though its holder still runs on this machine.")
@common
def unlock(ctx: Ctx, force: bool) -> None:
    """Free the app's release lock after saying who held it (use when a holder died).

    Refuses (exit 2) while the holder is still running on this machine, unless --force.
    A release that finds the lock of a holder that died on this machine takes it over
    by itself; `unlock` is for holders that died elsewhere.
    """
    app = ctx.load()
    with ctx.places(app) as fleet:
        holders = fleet.each(lambda t: t.ledger.unlock(app.name, force, ctx.warn))
    ctx.emit_each(fleet, holders, lambda x: {"app": app.name, "held_by": x.describe() if x else None},
                  lambda x: [f"released the lock held by {x.describe()}" if x else f"{app.name} was not locked"],
                  row=lambda x: {"held_by": x.describe() if x else None}, before={"app": app.name})


@click.command(name="verify", epilog=exits("0 the checkout rebuilds what serves", "1 a content hash differs (with --strict, an image ID too); or " + ENGINE))
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

    app = ctx.load()
    compose = Compose()
    done: dict[tuple[str, str, str | None], verify.ImageCheck] = {}  # the same image on several hosts is checked once

    def check(t: Target) -> dict[str, Any]:
        record, checks = verify.check_release(app, t, release_id, done, lambda service, ref, found: (
            verify.check_image(app, ctx.engine, compose, service, ref, not no_rebuild, cached, ctx.progress, found)))
        differs = any(c.content_hash_equal is False for c in checks)
        unreproducible = any(c.image_id_equal is False for c in checks)
        outcome = "differs" if differs else ("not reproducible" if unreproducible else "verified")
        return {"release": record.id, "outcome": outcome, "images": [c.as_json() for c in checks],
                "differs": differs, "unreproducible": unreproducible,
                "lines": [line for c in checks for line in c.lines()] + [f"{record.id}: {outcome}"]}

    try:
        with ctx.places(app) as fleet:
            rows = [check(t) for t in fleet.targets]  # in turn: a rebuild is shared by the hosts that need it
    finally:
        compose.close()
    ctx.emit_each(fleet, rows, lambda r: {"app": app.name, **_picked(r)}, lambda r: r["lines"], row=_picked,
                  before={"app": app.name})
    sys.exit(1 if any(r["differs"] or (strict and r["unreproducible"]) for r in rows) else 0)


def _picked(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("release", "outcome", "images")}
