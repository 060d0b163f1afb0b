"""The old color's way out (a mixin of immutdock.apply.release.Deployer): the drain of its
requests in flight, then its retire, said as it happens."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from immutdock.apply.outcome import Parts
from immutdock.apply.router import Router
from immutdock.errors import ImmutdockError
from immutdock.plan import render
from immutdock.progress import Status
from immutdock.targets.observe import AppState


class RetireSteps(Parts):
    def _retire_old(self, color: str, state: AppState) -> None:
        """The old color stopped and removed (each container gets SIGTERM, then SIGKILL at the
        end of its grace period). Meanwhile the engine's events tell when each got its SIGTERM
        and ended: what still runs a second after its SIGTERM is said, and a container the
        engine had to kill (it ignored SIGTERM) is warned of."""
        project = render.project_name(self.app.name, color)
        grace = {c.name: c.stop_timeout for c in state.colors.get(color, ())}
        termed: dict[str, float] = {}  # container -> when the engine sent it SIGTERM
        ended: set[str] = set()
        killed: set[str] = set()
        done = threading.Event()
        t0 = time.monotonic()

        def read(stream: Any) -> None:
            try:
                for event in stream:
                    attrs = (event.get("Actor") or {}).get("Attributes") or {}
                    name, action = str(attrs.get("name", "")), event.get("Action") or event.get("status")
                    if action == "kill" and str(attrs.get("signal")) in ("9", "KILL", "SIGKILL"):
                        killed.add(name)
                    elif action == "kill":
                        termed.setdefault(name, time.monotonic())
                    elif action == "die":
                        ended.add(name)
            except Exception:  # noqa: BLE001 - the stream closed (the retire ended) or broke: only words lost
                return

        def look() -> None:
            told = False
            while not done.wait(0.5):
                now = time.monotonic()
                late = sorted(n for n, at in list(termed.items()) if n not in ended and now - at >= 1)
                if late:
                    waited = max(now - termed[n] for n in late)
                    self.say(Status("retire", f"stopping {color}: {', '.join(late)} still running {waited:.0f} s "
                                              f"after SIGTERM (SIGKILL at {max(grace.get(n, 10) for n in late)} s)",
                                    quiet=told))  # a log gets the first
                    told = True

        with contextlib.ExitStack() as stack:
            try:
                stream = stack.enter_context(self.target.colors.events(project))
                threading.Thread(target=read, args=(stream,), name=f"events {color}", daemon=True).start()
                watcher = threading.Thread(target=look, name=f"retire {color}", daemon=True)
                watcher.start()
                stack.callback(watcher.join, 5)
                stack.callback(done.set)
            except ImmutdockError:
                pass  # no events: the retire goes on, unsaid
            self.target.colors.down(project)
        self.say(Status("retire", f"retired {color} in {time.monotonic() - t0:.1f} s", quiet=True))
        for name in sorted(killed):
            limit = grace.get(name, 10)
            self.warn(f"{name} ignored SIGTERM: the engine killed it when its {limit} s grace period ended; let it "
                      f"exit on SIGTERM (or give it an init: `init: true`), and a retire takes {limit} s less")

    def _drain(self, router: Router, color: str, state: AppState) -> None:
        """Wait for requests in flight on the old color, up to its longest stop grace period."""
        limit = max([c.stop_timeout for c in state.colors.get(color, ())] or [10])
        deadline = time.monotonic() + limit
        said: int | None = None  # the whole seconds left when last said (once a second at most)
        while time.monotonic() < deadline:
            flight = router.stats().sessions.get(color, 0)
            left = deadline - time.monotonic()
            if flight == 0:
                if said is not None:
                    self.say(Status("drain", f"drained {color}: no request in flight", quiet=True))
                return
            if said != int(left):  # a log gets the first
                self.say(Status("drain", f"draining {color}: {flight} request{'s' * (flight != 1)} in flight, "
                                         f"{left:.0f} s of its {limit} s grace left", quiet=said is not None))
                said = int(left)
            time.sleep(0.1)
        self.warn(f"{color} still had requests in flight after {limit}s; stopping it anyway")
