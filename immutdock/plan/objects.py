"""A model's secrets and configs made from files, as a swarm holds them: immutable objects
named by their value's digest, so a changed value is a new object and a rollback runs its
release's own. The digests are salted (a name shows no plain hash of a value, which a short
password would not survive) and recorded with the model they belong to."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from immutdock.errors import ConfigError
from immutdock.identity.redact import content_digest

OBJECTS = "x-immutdock-objects"  # in a model: {"salt", "digests": {"KIND.KEY": digest}}
KINDS = {"secrets": "secret", "configs": "config"}  # kind -> the role label of those immutdock makes


def object_name(app: str, kind: str, key: str, digest: str) -> str:
    """A secret's or config's name on the Swarm, from its value's digest."""
    return f"{app}_{kind.rstrip('s')}_{key}_{digest.rpartition(':')[2][:12]}"


def file_value(kind: str, key: str, path: str) -> bytes:
    """The value of a secret or config from a file; a file that cannot be read is the user's to fix."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{kind}.{key}", f"cannot read its file {path}: {exc.strerror or exc}",
                          "put the file back, or fix its path in the compose file") from None


def from_files(model: Mapping[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Every secret and config of a model made from a file: "KIND.KEY" -> (kind, key, its file)."""
    return {f"{kind}.{key}": (kind, key, str(spec["file"])) for kind in KINDS
            for key, spec in (model.get(kind) or {}).items()
            if isinstance(spec, Mapping) and spec.get("file") and not spec.get("external")}


def with_objects(model: Mapping[str, Any], salt: str) -> dict[str, Any]:
    """The model with the salted digest of each of its values from a file, taken now; a model
    that has them keeps them (a rollback's, recorded with its release)."""
    if OBJECTS in model:
        return dict(model)
    digests = {ref: content_digest(salt, file_value(kind, key, path))
               for ref, (kind, key, path) in from_files(model).items()}
    return {**model, OBJECTS: {"salt": salt, "digests": digests}} if digests else dict(model)


def _recorded(model: Mapping[str, Any]) -> Mapping[str, str]:
    """The digests a model records ("KIND.KEY" -> digest), none for a model without them."""
    return (model.get(OBJECTS) or {}).get("digests") or {}


def digests(model: Mapping[str, Any]) -> dict[str, str]:
    """The digest that names each of the model's objects: the one it records, else the
    file's value's now (a model rendered without them)."""
    recorded = _recorded(model)
    return {ref: recorded.get(ref) or "sha256:" + hashlib.sha256(file_value(kind, key, path)).hexdigest()
            for ref, (kind, key, path) in from_files(model).items()}


def recorded_names(app: str, model: Mapping[str, Any]) -> set[str]:
    """The names of the objects a model runs with, as the model records them."""
    recorded = _recorded(model)
    return {object_name(app, kind, key, recorded[ref]) for ref, (kind, key, _f) in from_files(model).items()
            if ref in recorded}


def stale(model: Mapping[str, Any], ref: str, value: bytes) -> bool:
    """Whether `value` (a file's now) is not the one the model recorded for `ref`."""
    digest = _recorded(model).get(ref)
    return bool(digest) and content_digest(str((model.get(OBJECTS) or {}).get("salt") or ""), value) != digest
