"""Images to a target's hosts through the registry the target names (`registry:`): pushed
once from the engine that built them, pulled by each host that lacks them.

An image keeps its local name on both sides (`shop-web:3f2a9c1b7d4e`); on the registry it is
`REGISTRY/shop-web:3f2a9c1b7d4e`. That name is a passing tag: removed here after the push and
on each host after the pull, so hosts hold exactly what a shipment without a registry leaves.
The registry skips the layers it has on a push, and a host's engine skips those it holds on a
pull, so an unchanged image moves nothing and a code change moves its own layer.

Hosts pull with this machine's registry credentials (from its docker config, as
`DOCKER_HOST=ssh://... docker pull` does): they travel to the host's engine over SSH in the
request and are not stored there."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Mapping

from immutdock import interrupts
from immutdock.errors import ConfigError, EngineError
from immutdock.gateways.engine import Engine
from immutdock.targets.ship import Progress, Shipment, wanted

_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = re.compile(rf"^{_HOST}(?::[0-9]{{1,5}})?(?:/{_PATH})*$")


def parse(value: object, where: str) -> str:
    """A target's `registry:`: host[:port][/path...], without a scheme or a tag."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(where, "must name a registry", "e.g. registry: registry.example.com:5000/team")
    text = value.strip().rstrip("/")
    if "://" in text:
        raise ConfigError(where, f"{value!r} has a scheme", f"write it without one: registry: {text.split('://', 1)[1]}")
    if not _REGISTRY.match(text):
        raise ConfigError(where, f"{value!r} is not a registry address",
                          "write host[:port][/path] in lower case, e.g. registry: registry.example.com:5000/team")
    return text


def remote_ref(registry: str, ref: str) -> str:
    """`ref`'s name on the registry."""
    return f"{registry}/{ref}"


@dataclass
class Pushed:
    """What was pushed to a registry for a fleet."""

    registry: str
    images: list[str] = field(default_factory=list)
    layers_pushed: int = 0
    layers_present: int = 0
    bytes: int = 0  # the layers pushed, uncompressed (what the engine read to push them)
    seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        return {"registry": self.registry, "images": self.images, "layers_pushed": self.layers_pushed,
                "layers_present": self.layers_present, "bytes_read": self.bytes, "seconds": round(self.seconds, 3)}


def through_registry(builder: Engine, hosts: Mapping[str, Engine], refs: list[str], registry: str,
                     progress: Progress, parallel: int = 8) -> tuple[Pushed, dict[str, Shipment]]:
    """Make every host hold every ref as the builder has it: what each lacks is pushed once
    and pulled there. (what was pushed, what each host pulled)."""
    ids, missing = wanted(builder, hosts, refs, parallel, "pushed")
    pushed = Pushed(registry=registry)
    result = {name: Shipment(host=name) for name in hosts}
    needed = sorted({ref for refs_ in missing.values() for ref in refs_})
    if not needed:
        return pushed, result

    t0 = time.monotonic()
    for ref in needed:
        target = remote_ref(registry, ref)
        repository, _, tag = target.rpartition(":")
        builder.tag(ref, repository, tag)
        try:
            moved = builder.push(target, lambda done, total: progress(f"pushing to {registry}", -1, done, total))
        finally:
            _untag(builder, target)
        pushed.layers_pushed += moved.layers
        pushed.layers_present += moved.present
        pushed.bytes += moved.bytes
    pushed.images, pushed.seconds = needed, time.monotonic() - t0

    def one(name: str) -> Shipment:
        engine, shipment = hosts[name], result[name]
        t = time.monotonic()
        for ref in missing[name]:
            target = remote_ref(registry, ref)
            before = shipment.bytes

            def counted(done: int, total: int, before: int = before) -> None:
                progress(f"pulling on {name}", -1, before + done, before + total)

            try:
                moved = engine.pull(target, counted=counted)
            except EngineError as exc:
                raise EngineError(f"{name}: {exc.message}", f"check that {name} reaches {registry} and trusts it (https, or "
                                  "insecure-registries in its daemon.json)") from None
            try:
                repository, _, tag = ref.rpartition(":")
                engine.tag(target, repository, tag)
            finally:
                _untag(engine, target)
            if engine.image_id(ref) != ids[ref]:
                raise EngineError(f"{name}: image {ref} arrived from {registry} as another image than the one built "
                                  f"({ids[ref][:19]})", f"check what else pushes to {registry}")
            shipment.bytes += moved.bytes
            shipment.layers_sent += moved.layers
            shipment.layers_skipped += moved.present
        shipment.images = list(missing[name])
        shipment.seconds = time.monotonic() - t
        return shipment

    interrupts.in_threads(one, [name for name in hosts if missing[name]], parallel)
    return pushed, result


def _untag(engine: Engine, ref: str) -> None:
    """Remove a passing registry name (the image stays under its own name)."""
    try:
        engine.remove_image(ref)
    except EngineError:
        pass
