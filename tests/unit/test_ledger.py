"""ledger: a release record as volume labels, and back."""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import pytest

from .helpers import APP, IMAGES, full_app, record
from immutdock import labels as L
from immutdock.plan import render
from immutdock.targets import ledger
from immutdock.targets.ledger import Record, from_labels, parse_release_id, to_labels

R = f"{L.PREFIX}.record"


def full_record(tmp_path: Path, **changes: Any) -> Record:
    model = render.color_project(full_app(tmp_path), "blue", IMAGES, "r7", "sha256:abc")
    rec = Record(number=7, kind="release", color="blue", images={"web": "shop-web:aaa", "db": "postgres:16"},
                 config_hash="sha256:abc", created="2024-05-01T12:00:00Z", outcome="ok", git="1a2b3c4d",
                 message="add search", source=None, packed=ledger.pack(model))
    return replace(rec, **changes)


def test_to_labels(tmp_path: Path) -> None:
    labels = to_labels(APP, full_record(tmp_path))
    assert labels[L.APP] == APP
    assert labels[L.ROLE] == "record"
    assert labels[L.RELEASE] == "r7"
    assert labels[L.COLOR] == "blue"
    assert labels[L.CONFIG_HASH] == "sha256:abc"
    assert labels[f"{R}.number"] == "7"
    assert json.loads(labels[f"{R}.images"]) == {"web": "shop-web:aaa", "db": "postgres:16"}
    assert labels[f"{R}.git"] == "1a2b3c4d"
    assert labels[f"{R}.source"] == ""
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())  # the engine wants strings


def test_round_trip(tmp_path: Path) -> None:
    rec = full_record(tmp_path)
    back = from_labels(to_labels(APP, rec))
    assert back == rec
    assert back.model == rec.model
    assert back.id == "r7"
    assert back.summary() == rec.summary()


def test_round_trip_of_a_rollback(tmp_path: Path) -> None:
    rec = full_record(tmp_path, number=9, kind="rollback", color="green", source="r4", git=None, outcome="failed",
                      message="")
    back = from_labels(to_labels(APP, rec))
    assert back == rec
    assert (back.kind, back.source, back.git, back.outcome) == ("rollback", "r4", None, "failed")


def test_profiles_round_trip_and_old_records_have_none(tmp_path: Path) -> None:
    rec = full_record(tmp_path, profiles=("debug", "jobs"))
    back = from_labels(to_labels(APP, rec))
    assert back.profiles == ("debug", "jobs") and back.summary()["profiles"] == ["debug", "jobs"]
    old = {k: v for k, v in to_labels(APP, rec).items() if k != f"{R}.profiles"}  # written before profiles
    assert from_labels(old).profiles == ()


def test_round_trip_through_json(tmp_path: Path) -> None:
    """The engine hands labels back as JSON: nothing may depend on Python objects surviving."""
    rec = full_record(tmp_path)
    back = from_labels(json.loads(json.dumps(to_labels(APP, rec))))
    assert back == rec and back.model == rec.model
    # the recorded model can be re-run as another color
    moved = render.with_color(back.model, APP, "green", "r8")
    assert moved["name"] == "shop-green"


def test_model_is_compressed(tmp_path: Path) -> None:
    rec = full_record(tmp_path)
    packed = to_labels(APP, rec)[f"{R}.model"]
    plain = json.dumps(rec.model, sort_keys=True)
    assert len(packed) < len(plain)
    assert json.loads(zlib.decompress(base64.b64decode(packed))) == rec.model
    assert packed.isascii() and "\n" not in packed


def test_compression_pays_for_a_big_model(tmp_path: Path) -> None:
    model = {"services": {f"svc{i}": {"image": f"shop-svc{i}:{'a' * 12}", "environment": {"A": "b" * 50}}
                          for i in range(60)}}
    packed = to_labels(APP, full_record(tmp_path, packed=ledger.pack(model)))[f"{R}.model"]
    assert len(packed) < len(json.dumps(model)) / 4
    assert from_labels(to_labels(APP, full_record(tmp_path, packed=ledger.pack(model)))).model == model


def test_empty_model_round_trip(tmp_path: Path) -> None:
    assert from_labels(to_labels(APP, full_record(tmp_path, packed=""))).model == {}


def test_long_message_is_cut(tmp_path: Path) -> None:
    rec = full_record(tmp_path, message="x" * 5000)
    assert from_labels(to_labels(APP, rec)).message == "x" * 2000


def test_unicode_message(tmp_path: Path) -> None:
    rec = full_record(tmp_path, message="déploiement ✓ 发布")
    assert from_labels(to_labels(APP, rec)).message == "déploiement ✓ 发布"


def test_from_minimal_labels() -> None:
    rec = from_labels({f"{R}.number": "3"})
    assert (rec.number, rec.id, rec.kind, rec.color, dict(rec.images), rec.outcome) == (3, "r3", "release", "", {}, "")
    assert (rec.git, rec.source, rec.model) == (None, None, {})


@pytest.mark.parametrize("text, number", [
    ("r7", 7), ("7", 7), ("R7", 7), (" r12 ", 12), ("r0", 0), ("007", 7),
    ("x", None), ("", None), ("r", None), ("r-1", None), ("-1", None), ("rr7", None), ("r7a", None), ("r 7", None),
    ("r1.5", None), ("blue", None),
])
def test_parse_release_id(text: str, number: int | None) -> None:
    assert parse_release_id(text) == number


def test_parse_release_id_superscript() -> None:
    assert parse_release_id("r²") is None


def test_volume_name() -> None:
    assert ledger.volume_name("shop", 12) == "immutdock.shop.r12"


def test_last_ok() -> None:
    recs = [record(1), record(2), record(3, outcome="failed"), record(4, outcome="interrupted")]
    assert ledger.last_ok(recs).id == "r2"
    assert ledger.last_ok([record(1, outcome="failed")]) is None
    assert ledger.last_ok([]) is None


class _Volumes:
    """Stands in for the Engine: `volumes(**labels)` is all `history` asks of it."""

    def __init__(self, found: list[Mapping[str, Any]]) -> None:
        self.found = found
        self.asked: dict[str, str] = {}

    def volumes(self, **labels: str) -> list[Mapping[str, Any]]:
        self.asked = labels
        return self.found


def test_history_is_sorted_by_number(tmp_path: Path) -> None:
    found = [{"Name": ledger.volume_name(APP, n), "Labels": to_labels(APP, full_record(tmp_path, number=n))}
             for n in (10, 2, 9)]
    engine = _Volumes(found)
    assert [r.id for r in ledger.history(engine, APP)] == ["r2", "r9", "r10"]  # type: ignore[arg-type]
    assert engine.asked == {L.APP: APP, L.ROLE: "record"}


class _Store:
    """Stands in for the Engine's volume calls, as the engine behaves: creating a name that
    exists hands back the existing volume, labels and all."""

    def __init__(self) -> None:
        self.vols: dict[str, dict[str, str]] = {}

    def volumes(self, **labels: str) -> list[Mapping[str, Any]]:
        return [{"Name": n, "Labels": lab} for n, lab in self.vols.items()
                if all(lab.get(k) == v for k, v in labels.items())]

    def create_volume(self, name: str, labels: Mapping[str, str]) -> Mapping[str, Any]:
        self.vols.setdefault(name, dict(labels))
        return {"Name": name, "Labels": self.vols[name]}

    def remove_volume(self, name: str) -> None:
        self.vols.pop(name, None)


def test_a_taken_name_never_drops_a_record(tmp_path: Path) -> None:
    store = _Store()
    store.vols[ledger.volume_name(APP, 2)] = {}  # somebody's volume, not a record
    first = ledger.write(store, APP, full_record(tmp_path, number=2))  # type: ignore[arg-type]
    second = ledger.write(store, APP, full_record(tmp_path, number=2, message="again"))  # type: ignore[arg-type]
    assert (first.volume, second.volume) == (f"immutdock.{APP}.r2-2", f"immutdock.{APP}.r2-3")
    assert store.vols[ledger.volume_name(APP, 2)] == {}
    found = ledger.history(store, APP)  # type: ignore[arg-type]
    assert [(r.id, r.message) for r in found] == [("r2", "add search"), ("r2", "again")]


def test_tidy_compacts_redacts_and_finishes_a_rewrite_cut_short(tmp_path: Path) -> None:
    from immutdock.identity.redact import Redactor, is_digest

    store = _Store()
    model = {"services": {"web": {"image": "shop-web:aaa", "environment": {"TOKEN": "plain-value"}}}}
    old = ledger.write(store, APP, full_record(tmp_path, number=1, packed=ledger.pack(model)))  # type: ignore[arg-type]
    gone = ledger.write(store, APP, full_record(tmp_path, number=2, salt="ab" * 16,  # type: ignore[arg-type]
                                                images={"web": "shop-web:gone"}))
    redacted = ledger.pack(Redactor("ab" * 16).scrub(full_record(tmp_path).model))
    keep = ledger.write(store, APP, full_record(tmp_path, number=3, salt="ab" * 16,  # type: ignore[arg-type]
                                                packed=redacted))
    done = ledger.tidy(store, APP, ledger.history(store, APP), Redactor("cd" * 16),  # type: ignore[arg-type]
                       gone=lambda ref: ref.endswith(":gone"))
    assert done == ["r1", "r2"]
    by_id = {r.id: r for r in ledger.history(store, APP)}  # type: ignore[arg-type]
    assert is_digest(by_id["r1"].model["services"]["web"]["environment"]["TOKEN"]) and by_id["r1"].salt == "cd" * 16
    assert by_id["r1"].key == old.key and old.volume not in store.vols, "rewritten under its key, old one gone"
    assert by_id["r2"].packed == "" and by_id["r2"].key == gone.key and by_id["r2"].images == {"web": "shop-web:gone"}
    assert by_id["r3"] == replace(keep, stale=()) and by_id["r3"].packed
    assert len(store.vols) == 3
    # A rewrite cut short leaves both volumes: history reads the redacted one, tidy removes the other.
    store.vols["stale"] = to_labels(APP, replace(old, packed=ledger.pack(model)))
    stale = ledger.history(store, APP)[0]  # type: ignore[arg-type]
    assert stale.salt and stale.stale == ("stale",)
    ledger.tidy(store, APP, ledger.history(store, APP), Redactor("cd" * 16))  # type: ignore[arg-type]
    assert "stale" not in store.vols and len(ledger.history(store, APP)) == 3  # type: ignore[arg-type]


def test_a_record_that_kept_a_value_inside_a_command_is_redacted_with_its_own_salt(tmp_path: Path) -> None:
    """An older immutdock digested environment values only where they were defined: a record
    of it keeps DATABASE_URL in clear in a command and a label. tidy digests them, keeping the
    record's salt and key; a record that holds no value is left as it is."""
    from immutdock.identity.redact import Redactor, is_digest

    url = "postgres://app:pw-0f9e8d7c@db/shop"
    old = Redactor("ab" * 16)
    model = {"services": {"web": {"image": "shop-web:aaa", "environment": {"DATABASE_URL": old.digest(url)},
                                  "command": ["serve", "--db", url], "labels": {"dsn": url}}}}
    store = _Store()
    leaky = ledger.write(store, APP, full_record(tmp_path, number=1, salt="ab" * 16,  # type: ignore[arg-type]
                                                 packed=ledger.pack(model)))
    current = Redactor("cd" * 16, frozenset({url}))  # the current file's values, another salt
    assert ledger.redacted(ledger.history(store, APP)[0], current) != leaky  # type: ignore[arg-type]
    assert ledger.tidy(store, APP, ledger.history(store, APP), current) == ["r1"]  # type: ignore[arg-type]
    (again,) = ledger.history(store, APP)  # type: ignore[arg-type]
    web = again.model["services"]["web"]
    assert is_digest(web["command"][2]) and is_digest(web["labels"]["dsn"]) and web["command"][:2] == ["serve", "--db"]
    assert web["command"][2] == old.digest(url), "digested with the record's own salt"
    assert (again.salt, again.key) == (leaky.salt, leaky.key) and url not in json.dumps(to_labels(APP, again))
    assert ledger.redacted(again, current) is again
    assert ledger.tidy(store, APP, ledger.history(store, APP), current) == []  # type: ignore[arg-type]
