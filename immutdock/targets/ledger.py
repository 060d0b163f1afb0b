"""Release history on the target: one small labelled object per release, on its Shelf: a
volume on an engine, a Swarm config on a cluster (targets/swarm.py).

The object holds nothing; its labels are the record (id, color, images, outcome, git revision,
and the rendered color project, compressed, with every environment value kept as a salted
digest: see immutdock.identity.redact), so any checkout on any machine sees the same history, and a
rollback re-runs a release without rebuilding.

Records are never deleted. `prune` compacts the record of a release whose images it removed
(its model goes; id, time, images, git revision and outcome stay). A record is written under a
name no other volume has, so a release number that collides never drops one."""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Callable, Mapping, Protocol

from immutdock import labels as L
from immutdock.errors import EngineError
from immutdock.identity.redact import Redactor


class Shelf(Protocol):
    """Where records are kept, in the words of an engine's volumes (an Engine is one): labelled
    objects, listed by label, made under a name (the one of that name when it exists), removed.
    Records are pure data; only the functions that read and write them take a Shelf."""

    def volumes(self, **label_values: str) -> list[Mapping[str, Any]]:
        """Each object as {"Name": ..., "Labels": {...}}."""
        ...
    def create_volume(self, name: str, labels: Mapping[str, str]) -> Mapping[str, Any]:
        """The object named `name`: made now, or the one that had that name (its "Labels")."""
        ...
    def remove_volume(self, name: str) -> None: ...

_R = f"{L.PREFIX}.record"


@dataclass(frozen=True)
class Record:
    """One release, rollback or heal as the target records it."""

    number: int
    kind: str  # release | rollback
    color: str
    images: Mapping[str, str]
    config_hash: str
    created: str
    outcome: str  # ok | failed | interrupted | rolled-back | switching (written before the switch, settled after)
    git: str | None = None
    message: str = ""
    source: str | None = None  # for a rollback: the release it went back to
    packed: str = ""  # the color model (redacted), compressed: see pack(); "" once compacted
    salt: str = ""  # of the model's digests; "" in records written before digests
    key: str = ""  # unique per record: a rewrite (compaction) keeps it
    volume: str = ""  # where it was read from
    stale: tuple[str, ...] = ()  # other volumes of the same record (a rewrite cut short): tidy removes them
    profiles: tuple[str, ...] = ()  # the compose profiles the release was made with

    @property
    def id(self) -> str:
        return f"r{self.number}"

    @property
    def model(self) -> Mapping[str, Any]:
        return _unpack(self.packed)

    def summary(self) -> dict[str, Any]:
        return {"release": self.id, "kind": self.kind, "color": self.color, "images": dict(self.images),
                "created": self.created, "git": self.git, "outcome": self.outcome, "message": self.message,
                "source": self.source, "compacted": self.outcome == "ok" and not self.packed,
                "profiles": list(self.profiles)}


def volume_name(app: str, number: int) -> str:
    return f"immutdock.{app}.r{number}"


def parse_release_id(text: str) -> int | None:
    text = text.strip().lower()
    text = text[1:] if text.startswith("r") else text
    return int(text) if text.isdecimal() and text.isascii() else None


def pack(model: Mapping[str, Any]) -> str:
    return base64.b64encode(zlib.compress(json.dumps(model, sort_keys=True).encode(), 9)).decode() if model else ""


@lru_cache(maxsize=64)
def _unpack(text: str) -> Mapping[str, Any]:
    return json.loads(zlib.decompress(base64.b64decode(text))) if text else {}


def to_labels(app: str, rec: Record) -> dict[str, str]:
    return {
        L.APP: app, L.ROLE: "record", L.RELEASE: rec.id, L.COLOR: rec.color, L.CONFIG_HASH: rec.config_hash,
        f"{_R}.number": str(rec.number), f"{_R}.kind": rec.kind, f"{_R}.images": json.dumps(dict(rec.images)),
        f"{_R}.created": rec.created, f"{_R}.outcome": rec.outcome, f"{_R}.git": rec.git or "",
        f"{_R}.message": rec.message[:2000], f"{_R}.source": rec.source or "", f"{_R}.model": rec.packed,
        f"{_R}.salt": rec.salt, f"{_R}.key": rec.key, f"{_R}.profiles": ",".join(rec.profiles),
    }


def from_labels(labels: Mapping[str, str], volume: str = "") -> Record:
    return Record(number=int(labels[f"{_R}.number"]), kind=labels.get(f"{_R}.kind", "release"),
                  color=labels.get(L.COLOR, ""), images=json.loads(labels.get(f"{_R}.images") or "{}"),
                  config_hash=labels.get(L.CONFIG_HASH, ""), created=labels.get(f"{_R}.created", ""),
                  outcome=labels.get(f"{_R}.outcome", ""), git=labels.get(f"{_R}.git") or None,
                  message=labels.get(f"{_R}.message", ""), source=labels.get(f"{_R}.source") or None,
                  packed=labels.get(f"{_R}.model", ""), salt=labels.get(f"{_R}.salt", ""),
                  key=labels.get(f"{_R}.key") or volume, volume=volume,
                  profiles=tuple(p for p in labels.get(f"{_R}.profiles", "").split(",") if p))


def history(engine: Shelf, app: str) -> list[Record]:
    """Every recorded release of `app`, oldest first (one per key: a rewrite cut short leaves
    two volumes of one record, and the compacted or redacted one is read)."""
    found: dict[str, Record] = {}
    for v in engine.volumes(**{L.APP: app, L.ROLE: "record"}):
        labels = v.get("Labels") or {}
        if f"{_R}.number" not in labels:
            continue
        rec = from_labels(labels, v.get("Name", ""))
        seen = found.get(rec.key)
        if seen is None:
            found[rec.key] = rec
            continue
        keep, drop = (rec, seen) if (bool(rec.salt), not rec.packed) > (bool(seen.salt), not seen.packed) else (seen, rec)
        found[rec.key] = replace(keep, stale=(*seen.stale, *rec.stale, drop.volume))
    return sorted(found.values(), key=lambda r: (r.number, r.created))


def write(engine: Shelf, app: str, rec: Record, taken: frozenset[str] = frozenset()) -> Record:
    """Write `rec` under a volume name nobody has (the engine hands back an existing volume of
    the same name instead of failing, so the labels it returns are checked)."""
    rec = replace(rec, key=rec.key or uuid.uuid4().hex)
    labels = to_labels(app, rec)
    base = volume_name(app, rec.number)
    for attempt in range(1, 100):
        name = base if attempt == 1 else f"{base}-{attempt}"
        if name in taken:
            continue
        made = engine.create_volume(name, labels)
        if (made.get("Labels") or {}).get(f"{_R}.key") == rec.key:
            return replace(rec, volume=name)
    raise EngineError(f"cannot find a free volume name for record {rec.id} of {app}",
                      f"remove stray volumes named {base}-*")


def rewrite(engine: Shelf, app: str, old: Record, new: Record, taken: frozenset[str]) -> Record:
    """Replace a record (same key): the new one is written before the old one goes."""
    written = write(engine, app, replace(new, key=old.key), taken | {old.volume})
    if old.volume and old.volume != written.volume:
        engine.remove_volume(old.volume)
    return written


def tidy(engine: Shelf, app: str, records: list[Record], redactor: Redactor,
         gone: Callable[[str], bool] | None = None) -> list[str]:
    """Rewrite what should not stay as it is: the model of a release one of whose images is
    `gone` (it cannot be rolled back to) is dropped; a model that holds a value in clear is
    redacted (see `redacted`). Returns the ids rewritten."""
    taken = frozenset(r.volume for r in records)
    done = []
    for rec in records:
        for volume in rec.stale:  # the other half of a rewrite cut short (it may hold values)
            engine.remove_volume(volume)
        if not rec.packed:
            continue
        if gone is not None and any(gone(ref) for ref in rec.images.values()):
            new = replace(rec, packed="")
        else:
            new = redacted(rec, redactor)
            if new is rec:
                continue
        taken |= {rewrite(engine, app, rec, new, taken).volume}
        done.append(rec.id)
    return done


def redacted(rec: Record, redactor: Redactor) -> Record:
    """`rec` with its model as immutdock keeps one now, or `rec` itself when it is so already.
    A model written before digests is redacted with `redactor`'s salt; one written with digests
    keeps its salt (its digests stay comparable) and gets every string that holds a value
    `redactor` looks for digested too (an older immutdock kept a value of a variable or key
    that does not look secret in clear inside a command or label)."""
    if not rec.packed:
        return rec
    if not rec.salt:
        return replace(rec, packed=pack(redactor.scrub(rec.model)), salt=redactor.salt)
    again = Redactor(rec.salt, redactor.embedded).scrub(rec.model)
    return rec if again == rec.model else replace(rec, packed=pack(again))


def last_ok(records: list[Record]) -> Record | None:
    ok = [r for r in records if r.outcome == "ok"]
    return ok[-1] if ok else None
