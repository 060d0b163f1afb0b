"""The mark of a stateful recreate: crash-consistent on every engine.

A stateful service is recreated stop-first (its volume is never mounted twice), so between the
stop of the old container and the start of the new one the database is down. On the local
engine the compose that does it outlives a killed immutdock (`Compose.up(surviving=True)`); on
a host reached over SSH it cannot (it reaches the host through immutdock's own connection). So
while a recreate runs, a marker container on the target names it: the services, the images and
the digest of the definition each gets. A killed immutdock leaves the mark behind, and the next
command that finds it finishes the recreate before anything else (`status --reap`, `release`,
`rollback`, `heal`); `status` names it meanwhile.

The mark holds no value of the app: images, digests and the salt of those digests."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from immutdock import labels as L
from immutdock.gateways.engine import ContainerState, Engine
from immutdock.targets import lock

ROLE = "recreate"
_K = f"{L.PREFIX}.recreate"


def mark_name(app: str) -> str:
    return f"immutdock.{app}.recreate"


@dataclass(frozen=True)
class Mark:
    """A recreate under way, or one a killed immutdock left."""

    marker_id: str
    services: tuple[str, ...]  # the ones being recreated
    images: Mapping[str, str]  # every stateful service's image, as the recreate's model had it
    hashes: Mapping[str, str]  # every stateful service's config-hash label in that model
    salt: str  # the salt of those digests


def read(container: ContainerState | None) -> Mark | None:
    """The mark a marker container holds (None for none, or for one that cannot be read)."""
    if container is None:
        return None
    labels = container.labels
    try:
        return Mark(marker_id=container.id, services=tuple(s for s in labels[f"{_K}.services"].split(",") if s),
                    images=dict(json.loads(labels[f"{_K}.images"])), hashes=dict(json.loads(labels[f"{_K}.hashes"])),
                    salt=labels[f"{_K}.salt"])
    except (KeyError, ValueError, TypeError):
        return None


def _labels(app: str, model: Mapping[str, Any], services: Sequence[str], salt: str) -> dict[str, str]:
    svcs = model["services"]
    return {L.APP: app, L.ROLE: ROLE, f"{_K}.services": ",".join(services),
            f"{_K}.images": json.dumps({n: s["image"] for n, s in svcs.items()}, sort_keys=True),
            f"{_K}.hashes": json.dumps({n: s["labels"][L.CONFIG_HASH] for n, s in svcs.items()}, sort_keys=True),
            f"{_K}.salt": salt}


def drop(engine: Engine, app: str) -> None:
    """Remove the mark, if there is one (the recreate it names is done)."""
    found = engine.marker(mark_name(app))
    if found is not None:
        engine.remove_marker(found[0])


@contextlib.contextmanager
def marked(engine: Engine, app: str, model: Mapping[str, Any], services: Sequence[str], salt: str) -> Iterator[None]:
    """The recreate of `services` (to `model`, the state project) marked on the engine while it
    runs. A mark an earlier run left is replaced: this recreate supersedes it. The mark goes when
    the block ends, however it ends, unless the process is killed meanwhile."""
    drop(engine, app)
    lock.ensure_image(engine)
    engine.create_marker(mark_name(app), lock.LOCK_IMAGE, _labels(app, model, services, salt))
    try:
        yield
    finally:
        drop(engine, app)


def changed_since(mark: Mark, model: Mapping[str, Any] | None, running: Mapping[str, str | None]) -> list[str]:
    """The stateful services the file now defines otherwise than the marked recreate did (pure):
    `model` is the state project rendered from the file with the mark's images and salt;
    `running` maps each stateful service that has a container to its config-hash label. A
    service the recreate did not touch must still be what runs."""
    svcs = (model or {}).get("services") or {}
    differ = [n for n in mark.services if n not in svcs or svcs[n]["labels"][L.CONFIG_HASH] != mark.hashes.get(n)]
    differ += [n for n, svc in svcs.items() if n not in mark.services and n in running
               and running[n] != svc["labels"][L.CONFIG_HASH]]
    # The same services: finishing it never adds one the file gained, nor removes one it lost.
    differ += sorted(set(svcs) ^ set(mark.hashes))
    return list(dict.fromkeys(differ))


def pending(mark: Mark, state: Sequence[ContainerState]) -> list[str]:
    """The marked services not yet running as the recreate defines them (pure): none once a
    compose that outlived a killed immutdock finished it."""
    done = {c.service for c in state if c.status == "running" and c.labels.get(L.CONFIG_HASH) == mark.hashes.get(c.service)}
    return [n for n in mark.services if n not in done]
