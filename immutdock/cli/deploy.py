"""Commands that change what serves: plan (what a release would do), release, rollback, heal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from immutdock.cli.context import common, Ctx, ENGINE, exits, place_folder, PLACES, RELEASE_EXITS
from immutdock.config import bounds

if TYPE_CHECKING:
    from immutdock.apply.fleet import Fleet, FleetOutcome
    from immutdock.apply.release import Deployer
    from immutdock.config.model import App
    from immutdock.apply.release import Outcome
    from immutdock.plan.imageplan import ImagePlan
    from immutdock.plan.release import ReleasePlan

_DEPLOYER = (*PLACES, "immutdock.apply.release")  # what plan, release, rollback and heal import next (ctx.load)


@click.command(epilog=exits("0 a release would run, or be a no-op", "1 release would fail: an address the router cannot publish, an image that cannot be had; or " + ENGINE))
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

    app = ctx.load(prefetch=observe, warn=True, ahead=_DEPLOYER)
    roles = [r.as_json() for r in app.roles]
    with ctx.places(app) as fleet:
        if app.settings.router is None and fleet.builds_itself:
            _images_only(ctx, app, fleet, roles)
            return
        found = fleet.plan(observed=lambda: ctx.prefetched(app, observe, fleet.targets[0]))
    ctx.emit_each(fleet, found, lambda p: {"roles": roles, **p.as_json(),
                                           "images": [{**i.as_json(), **_found(i)} for i in p.images]},
                  lambda p: _plan_lines(app, p) if fleet.policy is None else [_plan_line(app, p)],
                  row=lambda p: p.as_json(), before={"roles": roles})


def _images_only(ctx: Ctx, app: App, fleet: Fleet, roles: list[dict[str, Any]]) -> None:
    """plan of a file with no router: the images a build would make or reuse."""
    from immutdock.apply.build import check_obtainable, plan_app_images

    images = plan_app_images(app, fleet.builder, pull=False)
    check_obtainable(images, fleet.builder)
    lines = [f"role   {r.line()}" for r in app.roles]
    lines += [f"image  {i.service:<14} {i.image:<40} {_image_action(i, app)}" for i in images]
    lines.append("no service is routed, so `release` has nothing to switch: publish a port of a service that "
                 "runs blue/green, or set x-immutdock.router")
    ctx.emit({"roles": roles, "images": [{**i.as_json(), **_found(i)} for i in images]},
             lambda: [click.echo(line) for line in lines])


def _plan_line(app: App, p: ReleasePlan) -> str:
    return (f"no-op: {p.reason}; {p.color} keeps serving {p.release}" if p.noop else
            f"start {p.release} as {app.name}-{p.color} ({p.reason})")


def _plan_lines(app: App, p: ReleasePlan) -> list[str]:
    lines = [f"role   {r.line()}" for r in app.roles]
    lines += [f"image  {i.service:<14} {i.image:<40} {_image_action(i, app)}" for i in p.images]
    if p.noop:
        return lines + [f"no-op: {p.reason}; {p.color} keeps serving {p.release}"]
    lines.append(f"start  {p.release} as {app.name}-{p.color} ({p.reason})")
    lines += [f"remove half-made {app.name}-{c}" for c in p.cleanup]
    if p.router:
        lines.append(f"router {app.name}-router {p.router}")
    if p.stateful_new:
        lines.append(f"state  {', '.join(p.stateful_new)} created in {app.name}-state before the new color starts")
    if p.stateful_replaced:
        names = ", ".join(p.stateful_replaced)
        lines.append(f"state  {names} changes FIRST: recreated stop-first (a short outage of {names}) before the new "
                     f"color starts; if the release then fails, "
                     f"{'they keep' if len(p.stateful_replaced) > 1 else 'it keeps'} the new definition")
    elif p.stateful and not p.stateful_new:
        lines.append(f"state  {', '.join(p.stateful)} in {app.name}-state unchanged")
    lines += [f"state  {name} is no longer in the file: its container is removed, its volumes are kept"
              for name in p.stateful_removed]
    return lines + [f"switch traffic to {p.color}" + (f", drain and stop {p.retire}" if p.retire else "")]


def _image_action(i: ImagePlan, app: App) -> str:
    if i.bake is not None:
        binds = ", ".join(f"./{b.source} ({bounds.size_text(i.bake.sizes.get(b.target, 0))}) at {b.target}"
                          for b in i.bake.bakes)
        own = _image_action(i.bake.base, app)
        return f"{'reuse' if i.cached else 'bake'} its project binds {binds} into {i.bake.base.image} ({own})"
    if i.source is None:
        if i.missing_base:
            return f"build (its base {i.missing_base} is not on the engine: release pulls it, then knows the tag)"
        return "reuse" if i.cached else "build"
    always = app.services[i.service].definition.get("pull_policy") == "always"
    if i.missing_base:
        return f"pull {i.source} (not on the engine; its registry has it)"
    then = "; release pulls it again first (pull_policy: always)" if always else ""
    if not i.pinned:
        return f"reuse {i.source} as it is (stateful){then}"
    return (f"reuse {i.source} ({i.image_id[:19]}){then}" if i.cached
            else f"pin {i.source} ({i.image_id[:19]}) by its ID{then}")


def _found(i: ImagePlan) -> dict[str, Any]:
    """A missing pulled image, found in its registry (plan stops at one that is not), for --json."""
    return {"registry": "found"} if i.own.source and i.own.missing_base else {}


@click.command(epilog=RELEASE_EXITS)
@common
def release(ctx: Ctx) -> None:
    """Build, start the new color, gate it on health, switch traffic, retire the old.

    A no-op when content and config are unchanged. On any failure before the switch
    the new color is removed and the live release keeps serving (exit 1).
    """
    app = ctx.load(prefetch=_observe, warn=True, ahead=_DEPLOYER)
    with ctx.places(app) as fleet:
        result = fleet.release(observed=lambda: ctx.prefetched(app, _observe, fleet.targets[0]))
    _emit_outcome(ctx, fleet, result, lambda o: (
        f"nothing to release: {o.message}; {o.color} is serving at {o.url}" if o.outcome == "noop"
        else f"{o.release} is live on {o.color} at {o.url}"))


def _observe(where: Any, name: str) -> Any:
    """targets.observe, imported in the prefetch's thread while compose reads the file."""
    from immutdock.targets.observe import observe

    return observe(where, name)


def _emit_outcome(ctx: Ctx, fleet: Fleet, result: FleetOutcome, line: Callable[[Outcome], str]) -> None:
    """A release or rollback: the local engine's own outcome, or the fleet's table."""
    if fleet.policy is None:
        outcome = result.hosts[0].detail
        ctx.emit(outcome.as_json(), lambda: click.echo(line(outcome)))
    else:
        ctx.emit(result.as_json(), lambda: click.echo(_hosts_text(result)))


@click.command(epilog=RELEASE_EXITS)
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
    app = ctx.load(ahead=_DEPLOYER)
    with ctx.places(app) as fleet:
        folders = {t.name: place_folder(fleet, archive, t) for t in fleet.targets} if archive is not None else None
        result = fleet.rollback(to, archives=folders, bar=ctx.bar)
    _emit_outcome(ctx, fleet, result, lambda o: f"{o.message} at {o.url}")


@click.command(epilog=RELEASE_EXITS)
@click.option("--stateful", is_flag=True, help="Also replace drifted stateful services (stop-first: each is down "
                                               "until its fresh container is up; its volumes are kept).")
@click.option("--strict", is_flag=True, help="Also replace the containers with runtime writes (what `drift "
                                             "--strict` reports as drift).")
@common
def heal(ctx: Ctx, stateful: bool, strict: bool) -> None:
    """Replace what drifted with fresh containers of the live release, without rebuilding.

    The live release's images and recorded compose project start as the idle color and pass
    the same health gate and switch as a release (no request dropped); the drifted color is
    drained and removed. It is recorded as a new release (kind heal). Stateful services are
    replaced only with --stateful, stop-first, from the same image and definition. Strangers
    and a compose file changed without a release are never healed: they are reported; runtime
    writes (files added at run time) only with --strict. Exits 0 with "nothing to heal" when
    `drift` (with --strict: `drift --strict`) finds nothing heal replaces. With --target, each
    host heals what drifted on it.
    """
    app = ctx.load(ahead=_DEPLOYER)
    with ctx.places(app) as fleet:
        rows = fleet.each(lambda t: _heal(ctx, fleet.deployer(t, hold_lock=True), app, stateful,
                                          f"{t.name}: " if len(fleet.targets) > 1 else "", strict))
    ctx.emit_each(fleet, rows, lambda r: r, lambda r: r["lines"])


_HEALED = ("image", "missing", "extra", "stopped", "restarting", "filesystem")


def _heal(ctx: Ctx, deployer: Deployer, app: App, stateful: bool, prefix: str = "",
          strict: bool = False) -> dict[str, Any]:
    """Heal one engine: what drifted (with `strict`, runtime writes too), replaced; the result
    with its lines for people."""
    from immutdock.apply.drift import RUNTIME_WRITE, Finding
    from immutdock.cli.inspect import drift_report

    report = drift_report(deployer, app, strict)
    stateful_names = {s.name for s in app.stateful}
    kinds = (*_HEALED, RUNTIME_WRITE) if strict else _HEALED
    replaceable = [f for f in report["drift"] if f["service"] and f["kind"] in kinds]
    swapped = [f for f in replaceable if f["service"] not in stateful_names]
    states = [f for f in replaceable if f["service"] in stateful_names and stateful and f["kind"] != "extra"]
    for f in report["drift"]:
        if f not in swapped and f not in states:
            if swapped and f["container"] and f["service"] and f["service"] not in stateful_names and \
                    f["kind"] in (*_HEALED, RUNTIME_WRITE):
                ctx.say(f"{prefix}replaced with its color too: {Finding.from_json(f).text()}")
                continue
            hint = " (add --stateful to replace it)" if f in replaceable and f["kind"] != "extra" else ""
            if f["kind"] == RUNTIME_WRITE and not strict:
                both = " --stateful" if f["service"] in stateful_names else ""
                hint = f" (no drift: `immutdock heal --strict{both}` replaces it too)"
            ctx.warn(f"{prefix}not healed: {Finding.from_json(f).text()}{hint}")
    if not swapped and not states:
        return {"outcome": "noop", "drift": report["drift"],
                "lines": [f"nothing to heal ({report['release'] or 'nothing released'})"]}
    for f in swapped + states:
        ctx.say(f"{prefix}healing: {Finding.from_json(f).text()}")
    try:
        replaced = deployer.heal_stateful(sorted({f["service"] for f in states})) if states else []
        outcome = deployer.rollback(None, heal=True) if swapped else None
    finally:
        deployer.compose.close()
    lines = [f"replaced {name} (stateful) with a fresh container of {report['release']}" for name in replaced]
    lines += [f"{outcome.message} at {outcome.url}"] if outcome else []
    return {**(outcome.as_json() if outcome else {"outcome": "ok", "kind": "heal"}), "healed": swapped + states,
            "stateful_replaced": replaced, "lines": lines}


def _hosts_text(result: FleetOutcome) -> str:
    from immutdock.targets.ship import size_text

    lines = [f"{'host':<36} {'release':<8} {'color':<6} {'outcome':<12} {'shipped':>10} {'seconds':>8}"]
    for h in result.hosts:
        lines.append(f"{h.host:<36} {h.release or '-':<8} {h.color or '-':<6} {h.outcome:<12} "
                     f"{size_text(h.bytes):>10} {h.seconds:>8.1f}")
    return "\n".join(lines)
