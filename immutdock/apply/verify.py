"""`immutdock verify`: rebuild a release's images from the current checkout, replacing
nothing, and say whether they are the release's.

Two questions per built image:
- the content hash: the inputs hashed now against the release image's (its label). When they
  differ, which input: a file or folder of the context, the Dockerfile, a build arg, a base
  image's ID, ... (read from the image's build-inputs label, buildhash.differing_inputs);
- the image ID: the image is built again (without the build cache unless asked) under a
  throwaway tag, with the release image's own labels, and its ID compared with the release
  image's. When they differ the build is not reproducible (timestamps in the image, a `RUN`
  that fetches something); the layers that are the same are counted."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

from immutdock import labels as L
from immutdock.apply.build import MissingBase, build_inputs, build_one
from immutdock.apply.bake import baking_of, differing_bake
from immutdock.config.model import App, BuildSpec, Service
from immutdock.errors import ConfigError, EngineError
from immutdock.gateways.compose import Compose
from immutdock.gateways.engine import Engine
from immutdock.identity.buildhash import build_digest, differing_inputs, tag_for
from immutdock.targets.base import Target
from immutdock.targets.ledger import Record


@dataclass
class ImageCheck:
    service: str
    image: str  # the release's
    content_hash_equal: bool | None  # None: not compared (see note)
    recorded_hash: str = ""
    current_hash: str = ""
    differing: list[str] = field(default_factory=list)  # the inputs that changed, named
    image_id_equal: bool | None = None  # None: not rebuilt
    recorded_id: str | None = None
    rebuilt_id: str | None = None
    layers_equal: int = 0
    layers: int = 0
    note: str = ""

    def as_json(self) -> dict[str, object]:
        return asdict(self)

    def lines(self) -> list[str]:
        if self.content_hash_equal is None:
            return [f"{self.service}: {self.note}"]
        out = [f"{self.service}: content hash {'equal' if self.content_hash_equal else 'differs'} "
               f"({tag_for(self.current_hash)} now, {self.image})"]
        out += [f"{self.service}:   {d}" for d in self.differing]
        if self.image_id_equal is True:
            out.append(f"{self.service}: image ID equal ({_short(self.rebuilt_id)}): the build is reproducible")
        elif self.image_id_equal is False:
            out.append(f"{self.service}: image ID differs ({_short(self.rebuilt_id)} rebuilt, "
                       f"{_short(self.recorded_id)} released; {self.layers_equal} of {self.layers} layers equal): "
                       "the build is not reproducible")
        if self.note:
            out.append(f"{self.service}: {self.note}")
        return out


def pick_record(records: tuple[Record, ...], wanted: str | None, live: str | None) -> Record:
    """The release to verify: `wanted` (rN), else the live one."""
    name = wanted or live
    if name is None:
        raise ConfigError("--release", "nothing is released yet", "release the app first")
    found = next((r for r in reversed(records) if r.id == name), None)
    if found is None or found.outcome != "ok":
        known = ", ".join(r.id for r in records if r.outcome == "ok") or "none"
        raise ConfigError("--release", f"no release {name} that went live", f"releases: {known}")
    return found


def check_release(app: App, target: Target, release_id: str | None,
                  done: dict[tuple[str, str, str | None], ImageCheck],
                  check: Callable[[str, str, dict[str, Any] | None], ImageCheck]) -> tuple[Record, list[ImageCheck]]:
    """The release `release_id` (default: the live one) of `target`, and each of its images
    checked by check(service, ref, the image as the target has it: on the first of its nodes
    that holds it); `done` keeps the checks made, so the same image on several places is
    checked once."""
    from immutdock.targets.observe import observe

    state = observe(target, app.name)
    record = pick_record(state.records, release_id, state.live_record.id if state.live_record else None)
    checks = []
    for service, ref in sorted(record.images.items()):
        found = next((image for node in target.runtime.nodes.values()
                      if (image := node.inspect_image(ref))), None)
        key = (service, ref, (found or {}).get("Id"))
        if key not in done:
            done[key] = check(service, ref, found)
        checks.append(done[key])
    return record, checks


def check_image(app: App, engine: Engine, compose: Compose, service: str, ref: str, rebuild: bool, cache: bool,
                say: Callable[[str], None], found: Mapping[str, Any] | None) -> ImageCheck:
    """Check one release image, `found` (its inspection where it runs; None when it is gone),
    against the current checkout hashed and built on `engine` (where immutdock builds)."""
    svc = app.services.get(service)
    if svc is None:
        return ImageCheck(service, ref, None, note="not in the compose file any more: nothing to rebuild")
    labels = ((found or {}).get("Config") or {}).get("Labels") or {}
    if svc.bakes:
        return _check_baked(app, engine, svc, ref, labels, found)
    if svc.build is None:
        return ImageCheck(service, ref, None, note=f"pulled ({svc.image}), not built: nothing to rebuild")
    recorded_hash = labels.get(L.CONTENT_HASH, "")
    try:
        inputs = build_inputs(svc.build, engine, pull=False)
    except MissingBase as missing:
        return ImageCheck(service, ref, None, note=f"base image {missing} is not on the engine: "
                                                   f"pull it to compare ({ref} was built from it)")
    current = build_digest(inputs)
    if found is None:  # pruned: only its tag (the first 12 hex of the content hash) is left to compare
        equal = ref.rpartition(":")[2] == tag_for(current)
        return ImageCheck(service, ref, equal, current_hash=current, note="the release's image is gone (pruned): "
                          "its tag compared, nothing rebuilt")
    check = ImageCheck(service, ref, recorded_hash == current, recorded_hash, current, recorded_id=found["Id"])
    if not check.content_hash_equal:
        recorded = labels.get(L.INPUTS)
        check.differing = differing_inputs(json.loads(recorded), inputs, _inside(svc.build)) if recorded else [
            "(which input: the image has no build-inputs label; it was built by an older immutdock)"]
    if not check.content_hash_equal:
        check.note = "not rebuilt: its inputs differ, so would the image"
    elif rebuild:
        tag = f"{ref.rpartition(':')[0]}:verify-{secrets.token_hex(4)}"
        say(f"{service}: rebuilding{'' if cache else ' without the build cache'} as {tag}")
        try:
            build_one(service, svc.build, tag, labels, compose, say, cache=cache)
            rebuilt = engine.inspect_image(tag) or {}
        finally:
            try:
                engine.remove_image(tag)
            except EngineError:  # never made: the build failed, and its error says why
                pass
        check.rebuilt_id = rebuilt.get("Id")
        check.image_id_equal = check.rebuilt_id == check.recorded_id
        mine = list((rebuilt.get("RootFS") or {}).get("Layers") or [])
        theirs = list((found.get("RootFS") or {}).get("Layers") or [])
        check.layers = len(theirs)
        check.layers_equal = sum(1 for a, b in zip(mine, theirs) if a == b)
    return check


def _check_baked(app: App, engine: Engine, svc: Service, ref: str, labels: Mapping[str, Any],
                 found: Mapping[str, Any] | None) -> ImageCheck:
    """A release image with the service's project binds baked in: each bind's files and the
    service's own image compared with the checkout's (a bake is a COPY: nothing is rebuilt)."""
    if found is None:
        return ImageCheck(svc.name, ref, None, note="the release's image is gone (pruned): nothing to compare")
    if svc.build is not None:
        try:
            own: str | None = build_digest(build_inputs(svc.build, engine, pull=False))
        except MissingBase:
            own = None
    else:
        own = engine.image_id(str(svc.image))
    differing = differing_bake(svc, baking_of(app), labels, own)
    check = ImageCheck(svc.name, ref, not differing, labels.get(L.CONTENT_HASH, ""), labels.get(L.CONTENT_HASH, ""),
                       differing=differing, recorded_id=found.get("Id"))
    check.note = ("its project binds and its own image are the checkout's (a bake is a copy: not rebuilt)"
                  if not differing else "not rebuilt: its inputs differ, so would the image")
    return check


def _short(image_id: str | None) -> str:
    return str(image_id or "").rpartition(":")[2][:12]


def _inside(spec: BuildSpec) -> str | None:
    """The Dockerfile's top-level name in its context, when it is in it."""
    try:
        return spec.dockerfile.resolve().relative_to(spec.context.resolve()).parts[0]
    except (ValueError, IndexError):
        return None
