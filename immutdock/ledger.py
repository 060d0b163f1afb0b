"""Release history on the target engine: one small labelled volume per release.

The volume holds nothing; its labels are the record (id, color, images, outcome, and the
rendered color project, compressed), so any checkout on any machine sees the same history,
and a rollback re-runs a release exactly, without rebuilding and without the old file."""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from immutdock import labels as L
from immutdock.engine import Engine

_R = f"{L.PREFIX}.record"


@dataclass(frozen=True)
class Record:
    number: int
    kind: str  # release | rollback
    color: str
    images: Mapping[str, str]
    config_hash: str
    created: str
    outcome: str  # ok | failed | interrupted
    git: str | None = None
    message: str = ""
    source: str | None = None  # for a rollback: the release it went back to
    model: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def id(self) -> str:
        return f"r{self.number}"

    def summary(self) -> dict[str, Any]:
        return {"release": self.id, "kind": self.kind, "color": self.color, "images": dict(self.images),
                "created": self.created, "git": self.git, "outcome": self.outcome, "message": self.message,
                "source": self.source}


def volume_name(app: str, number: int) -> str:
    return f"immutdock.{app}.r{number}"


def parse_release_id(text: str) -> int | None:
    text = text.strip().lower()
    text = text[1:] if text.startswith("r") else text
    return int(text) if text.isdecimal() and text.isascii() else None


def _pack(model: Mapping[str, Any]) -> str:
    return base64.b64encode(zlib.compress(json.dumps(model, sort_keys=True).encode(), 9)).decode()


def _unpack(text: str) -> dict[str, Any]:
    return json.loads(zlib.decompress(base64.b64decode(text))) if text else {}


def to_labels(app: str, rec: Record) -> dict[str, str]:
    return {
        L.APP: app, L.ROLE: "record", L.RELEASE: rec.id, L.COLOR: rec.color, L.CONFIG_HASH: rec.config_hash,
        f"{_R}.number": str(rec.number), f"{_R}.kind": rec.kind, f"{_R}.images": json.dumps(dict(rec.images)),
        f"{_R}.created": rec.created, f"{_R}.outcome": rec.outcome, f"{_R}.git": rec.git or "",
        f"{_R}.message": rec.message[:2000], f"{_R}.source": rec.source or "", f"{_R}.model": _pack(rec.model),
    }


def from_labels(labels: Mapping[str, str]) -> Record:
    return Record(number=int(labels[f"{_R}.number"]), kind=labels.get(f"{_R}.kind", "release"),
                  color=labels.get(L.COLOR, ""), images=json.loads(labels.get(f"{_R}.images") or "{}"),
                  config_hash=labels.get(L.CONFIG_HASH, ""), created=labels.get(f"{_R}.created", ""),
                  outcome=labels.get(f"{_R}.outcome", ""), git=labels.get(f"{_R}.git") or None,
                  message=labels.get(f"{_R}.message", ""), source=labels.get(f"{_R}.source") or None,
                  model=_unpack(labels.get(f"{_R}.model", "")))


def history(engine: Engine, app: str) -> list[Record]:
    """Every recorded release of `app`, oldest first."""
    found = [from_labels(v.get("Labels") or {}) for v in engine.volumes(**{L.APP: app, L.ROLE: "record"})]
    return sorted(found, key=lambda r: r.number)


def write(engine: Engine, app: str, rec: Record) -> None:
    engine.create_volume(volume_name(app, rec.number), to_labels(app, rec))


def last_ok(records: list[Record]) -> Record | None:
    ok = [r for r in records if r.outcome == "ok"]
    return ok[-1] if ok else None
