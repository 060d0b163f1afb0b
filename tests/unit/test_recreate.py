"""The mark of a stateful recreate (immutdock.targets.recreate): what it holds, how it is read back, and
when the file no longer defines what it was recreating."""

from __future__ import annotations

from immutdock import labels as L
from immutdock.gateways.engine import ContainerState
from immutdock.targets import recreate


def _model(**hashes: str) -> dict:
    return {"services": {n: {"image": f"{n}:1", "labels": {L.CONFIG_HASH: h}} for n, h in hashes.items()}}


def _marker(labels: dict[str, str]) -> ContainerState:
    return ContainerState(id="m1", name="immutdock.app.recreate", labels=labels, status="created", health=None,
                          exit_code=None, image="immutdock-lock:1", stop_timeout=10)


def test_a_mark_reads_back_what_it_was_made_of_and_holds_no_value() -> None:
    labels = recreate._labels("app", _model(db="h-db", cache="h-cache"), ["db"], "00ff")
    mark = recreate.read(_marker(labels))
    assert mark is not None
    assert (mark.marker_id, mark.services, mark.salt) == ("m1", ("db",), "00ff")
    assert mark.images == {"db": "db:1", "cache": "cache:1"}
    assert mark.hashes == {"db": "h-db", "cache": "h-cache"}
    assert labels[L.ROLE] == "recreate" and labels[L.APP] == "app"
    assert set(labels) == {L.ROLE, L.APP, *(f"io.immutdock.recreate.{k}" for k in ("services", "images", "hashes",
                                                                                    "salt"))}


def test_an_unreadable_mark_is_none() -> None:
    assert recreate.read(None) is None
    assert recreate.read(_marker({L.ROLE: "recreate"})) is None
    assert recreate.read(_marker({L.ROLE: "recreate", "io.immutdock.recreate.services": "db",
                                  "io.immutdock.recreate.images": "{not json", "io.immutdock.recreate.hashes": "{}",
                                  "io.immutdock.recreate.salt": "00"})) is None


def test_the_file_changed_since_the_recreate_names_each_service_that_differs() -> None:
    mark = recreate.read(_marker(recreate._labels("app", _model(db="h-db", cache="h-cache"), ["db"], "00")))
    assert mark is not None
    running = {"cache": "h-cache"}  # db: cut short, no container of the new definition runs
    assert recreate.changed_since(mark, _model(db="h-db", cache="h-cache"), running) == []
    assert recreate.changed_since(mark, _model(db="h-db2", cache="h-cache"), running) == ["db"]
    assert recreate.changed_since(mark, _model(cache="h-cache"), running) == ["db"]  # gone from the file
    # a service the recreate did not touch must still be what runs
    assert recreate.changed_since(mark, _model(db="h-db", cache="h-other"), running) == ["cache"]
    assert recreate.changed_since(mark, None, running) == ["db", "cache"]
    # finishing it never adds a service the file gained since
    assert recreate.changed_since(mark, _model(db="h-db", cache="h-cache", queue="h-q"), running) == ["queue"]


def test_a_recreate_a_surviving_compose_finished_is_pending_no_more() -> None:
    mark = recreate.read(_marker(recreate._labels("app", _model(db="h-db", cache="h-cache"), ["db", "cache"], "00")))
    assert mark is not None

    def db(status: str, config: str, service: str = "db") -> ContainerState:
        return ContainerState(id=service, name=service, labels={L.COMPOSE_SERVICE: service, L.CONFIG_HASH: config},
                              status=status, health=None, exit_code=None, image="x", stop_timeout=10)

    assert recreate.pending(mark, []) == ["db", "cache"]
    assert recreate.pending(mark, [db("created", "h-db"), db("running", "h-cache", "cache")]) == ["db"]
    assert recreate.pending(mark, [db("running", "h-old"), db("running", "h-cache", "cache")]) == ["db"]
    assert recreate.pending(mark, [db("running", "h-db"), db("running", "h-cache", "cache")]) == []
