"""Observe: what the engine says about one app, read by label (no decisions here)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from immutdock import labels as L
from immutdock.errors import EngineError
from immutdock.gateways.engine import Engine
from immutdock.plan.state import AppState, ContainerState
from immutdock.targets import ledger
from immutdock.targets.base import Target
from immutdock.targets.engine import RouterSwitch, engine_ledger

__all__ = ["AppState", "ContainerState", "observe", "records"]


def records(where: Engine | Target, app: str) -> list[ledger.Record]:
    """The app's release records, on an engine or through a Target's Ledger."""
    return ledger.history(where, app) if isinstance(where, Engine) else where.ledger.records(app)


def observe(where: Engine | Target, app: str) -> AppState:
    """What runs of `app` on an engine, or on a Target (through its Colors, Ledger and Switch)."""
    if isinstance(where, Engine):
        ledger_, switch = engine_ledger(where), RouterSwitch(where)
        containers_of = lambda a: where.containers(**{L.APP: a})  # noqa: E731
    else:
        ledger_, switch, containers_of = where.ledger, where.switch, where.colors.containers
    with ThreadPoolExecutor(max_workers=1) as pool:  # the records are read while containers are
        records_f = pool.submit(ledger_.records, app)
        containers = containers_of(app)
        records = tuple(records_f.result())
    colors: dict[str, list[ContainerState]] = {"blue": [], "green": []}
    state: list[ContainerState] = []
    router = None
    for c in containers:
        role = c.labels.get(L.ROLE)
        if role == "color" and c.labels.get(L.COLOR) in colors:
            colors[c.labels[L.COLOR]].append(c)
        elif role == "state":
            state.append(c)
        elif role == "router":
            router = c
    live = None
    if router is not None:  # its live symlink can be read even while it is stopped
        try:
            live = switch.live(router)
        except EngineError:
            live = None
    if live is None:  # no router: the last good release's color, if it still exists
        last = ledger.last_ok(list(records))
        live = last.color if last is not None and colors.get(last.color) else None
    return AppState(app=app, records=records, router=router, live_color=live,
                    colors={k: tuple(v) for k, v in colors.items()}, state=tuple(state),
                    containers=tuple(containers))
