"""Status report: `gather` reads the engine, `describe` and `problem` are pure."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from immutdock import labels as L
from immutdock.apply.router import BackendStats, Router
from immutdock.config.model import App
from immutdock.errors import EngineError
from immutdock.gateways.engine import ContainerState, Engine
from immutdock.plan.release import not_serving
from immutdock.targets import lock, recreate
from immutdock.targets.base import Target
from immutdock.targets.observe import AppState, observe


def gather(where: Engine | Target, app_name: str) -> tuple[AppState, BackendStats | EngineError | None]:
    """What status reports on, on an engine or a Target: the app's state, and its router's
    stats (or why they could not be read; None when no router runs a live color). The stats
    (an exec in the router) are read while the rest is."""
    if isinstance(where, Engine):
        found = where.containers(**{L.APP: app_name, L.ROLE: "router"})
        control: Callable[[ContainerState], Router] = lambda c: Router(where, c)  # noqa: E731
    else:
        found = [c for c in where.colors.containers(app_name) if c.labels.get(L.ROLE) == "router"]
        control = where.switch.control
    routers = [c for c in found if c.status == "running"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        stats_f = pool.submit(_stats, control, routers[0]) if routers else None
        state = observe(where, app_name)
        stats = stats_f.result() if stats_f else None
    running = state.router is not None and state.router.status == "running" and state.live_color
    return state, stats if running else None


def _stats(control: Callable[[ContainerState], Router], router: ContainerState) -> BackendStats | EngineError:
    try:
        return control(router).stats()
    except EngineError as exc:
        return exc


def describe(app: App, state: AppState, stats: BackendStats | EngineError | None) -> dict[str, Any]:
    router: dict[str, Any] = {"status": state.router.status if state.router else "absent", "live": state.live_color}
    if isinstance(stats, EngineError):
        router["error"] = stats.message
    elif stats is not None and state.live_color:
        router["up"] = len(stats.up(state.live_color))
        if app.settings.router is not None:
            router["routes"] = [{"route": i, "publish": r.publish, "service": r.service, "mode": r.mode,
                                 "up": len(stats.up(state.live_color, i))}
                                for i, r in enumerate(app.settings.router.routes)]
        router["servers"] = [{"color": s.backend, "route": s.route, "name": s.name, "status": s.status,
                              "address": s.address} for s in stats.servers if s.resolved]
    containers = []
    groups = [("router", [state.router] if state.router else []), ("state", list(state.state))] + \
        [(color, list(cs)) for color, cs in state.colors.items()]
    for role, cs in groups:
        for c in cs:
            containers.append({"role": role, "name": c.name, "service": c.service, "status": c.status,
                               "health": c.health, "image": c.image, "release": c.labels.get(L.RELEASE)})
    live_images = {c.service: c.image for c in state.colors.get(state.live_color or "", ())}
    busy = _holder(state)
    report = {"app": app.name, "live_color": state.live_color, "live_release": state.live_release,
              "url": app.settings.router.url if app.settings.router else None, "images": live_images,
              "router": router, "containers": containers, "releases": len(state.records),
              "half_made": list(state.half_made) if state.live_color else [],
              "not_retired": [{"color": c, "release": state.color_release(c)} for c in state.not_retired],
              "in_progress": busy,
              # What a killed immutdock left unfinished (while a command holds the lock, it is its work).
              "interrupted": [] if busy else [{"release": r.id, "live": r is state.live_record}
                                              for r in state.records if r.outcome == "switching"],
              "recreating": [] if busy or (mark := recreate.read(state.recreating)) is None
              else recreate.pending(mark, state.state)}
    report["problem"] = problem(app, state, router)
    return report


def problem(app: App, state: AppState, router: dict[str, Any]) -> str | None:
    """Why the app does not serve, or None (pure over what describe gathered)."""
    if not state.records and state.live_color is None:
        return None  # never released
    if state.live_color is None:
        return "no color is live"
    broken = not_serving(app, state)  # the same reasons make a release that repairs it
    if broken or app.settings.router is None:
        return broken
    if router.get("error"):
        return f"the router does not answer ({router['error']})"
    if not router.get("up"):
        return f"the live color {state.live_color} has no healthy server in the router"
    down = [r for r in router.get("routes") or [] if not r["up"]]
    if down:
        return (f"the live color {state.live_color} has no healthy {down[0]['service']} server in the router "
                f"(route on {down[0]['publish']})")
    return None


def _holder(state: AppState) -> str | None:
    """Who holds the app's lock, unless that process is known to be gone (then what it left is
    interrupted work, not work in progress)."""
    found = next((c for c in state.containers if c.labels.get(L.ROLE) == "lock"), None)
    if found is None:
        return None
    holder = lock.holder_of(found.labels)
    return None if holder.is_gone() else holder.describe()
