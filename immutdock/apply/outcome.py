"""What a release, rollback or heal reports (Outcome), what it carries between its steps
(Live), the images a fleet prepared for it (Prepared), and what every part of the Deployer
holds (Parts)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from immutdock.apply.build import Checkout, ImagePlan
from immutdock.apply.router import Router
from immutdock.plan.release import ReleasePlan
from immutdock.targets import ledger

if TYPE_CHECKING:
    from immutdock.config.model import App
    from immutdock.gateways.compose import Compose
    from immutdock.gateways.engine import Engine
    from immutdock.targets.base import Target

Say = Callable[[str], None]


@dataclass
class Outcome:
    """What a release, rollback or heal did: the command's result."""

    release: str
    color: str
    outcome: str  # ok | noop
    kind: str = "release"
    images: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    message: str = ""
    source: str | None = None  # for a rollback: the release it went back to

    def as_json(self) -> dict[str, Any]:
        return {"release": self.release, "color": self.color, "outcome": self.outcome, "kind": self.kind,
                "images": self.images, "url": self.url, "timings": {k: round(v, 3) for k, v in self.timings.items()},
                "message": self.message, "source": self.source}


@dataclass
class Live:
    """What the steps of one release, rollback or heal share as they go."""

    plan: ReleasePlan
    kind: str
    refs: Mapping[str, str]
    source: str | None
    project: str  # the new color's
    router: Router | None = None
    record: ledger.Record | None = None  # written before the switch
    retired: bool = False


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Prepared:
    """Images planned, built (or pulled) and shipped before the Deployer runs: a fleet plans
    and builds once, on this machine, for every host."""

    images: tuple[ImagePlan, ...]
    router: ImagePlan | None


class Parts:
    """What the Deployer (immutdock.apply.release) and each of its parts (release_router,
    release_state, release_records) hold: set by Deployer.__init__."""

    app: App
    target: Target
    engine: Engine
    compose: Compose
    builder: Engine
    prepared: Prepared | None
    hold_lock: bool
    say: Say
    warn: Say
    _salt: str | None
    _pem: bytes | None
    _checkout: Callable[[], Checkout] | None
