"""Apply, without Docker: release, rollback and heal on in-memory Targets.

`Place` is one place an app runs, held in memory: its compose projects, records, lock and
router. It answers the Target's questions (immutdock.targets.base) and, as its Runtime's
engine and compose, the few engine calls the flow makes besides (networks, volumes, probes,
the color's containers, logs). Any of its operations can be told to fail (or be interrupted)
the next time it runs, which is how each step's failure is made here."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

from .helpers import APP, image_plan, make_context, port, validate
from immutdock import labels as L
from immutdock.apply.fleet import Fleet
from immutdock.apply.release import Deployer, Prepared
from immutdock.apply.router import BackendStats, Server
from immutdock.config.model import App
from immutdock.config.model import Target as Policy
from immutdock.errors import EngineError, ImmutdockError, LockHeld
from immutdock.plan.imageplan import ImagePlan
from immutdock.plan.state import ContainerState
from immutdock.targets.base import Target
from immutdock.targets.images import Delivery
from immutdock.targets.ledger import Record

# -- the in-memory place ---------------------------------------------------------------------------


class World:
    """What one place holds for the app, and a log of what was done to it."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.projects: dict[str, Mapping[str, Any]] = {}
        self.history: list[Record] = []
        self.live: str | None = None  # the color the router sends traffic to
        self.locked: list[str] = []
        self.log: list[str] = []
        self.failing: dict[str, BaseException] = {}  # operation -> what it raises the next time
        self.broken: set[str] = set()  # projects whose containers exit as they start
        self.checked: list[str] = []  # the projects Colors.check was asked about
        self.markers: dict[str, Any] = {}  # the engine's markers (a stateful recreate's)
        self.held: dict[str, set[str]] = {}  # the router's backend -> its slots held (Router.hold)

    def fail(self, operation: str, exc: BaseException | None = None) -> None:
        self.failing[operation] = exc or EngineError(f"{operation} failed on {self.name}")

    def did(self, operation: str) -> None:
        if operation in self.failing:
            raise self.failing.pop(operation)
        self.log.append(operation)

    def target(self) -> Target:
        engine = FakeEngine(self)
        return Target(name=self.name, runtime=FakeRuntime(self.name, engine), images=Memory(),  # type: ignore[arg-type]
                      ledger=FakeLedger(self), switch=FakeSwitch(self), colors=FakeColors(self))

    def project_containers(self, project: str) -> list[ContainerState]:
        found = []
        for i, (service, svc) in enumerate(sorted((self.projects.get(project) or {}).get("services", {}).items())):
            labels = {**(svc.get("labels") or {}), L.COMPOSE_PROJECT: project, L.COMPOSE_SERVICE: service}
            found.append(ContainerState(id=f"{project}-{service}", name=f"{project}-{service}-1", labels=labels,
                                        status="exited" if project in self.broken else "running", health=None,
                                        exit_code=1 if project in self.broken else None, image=svc.get("image", ""),
                                        stop_timeout=1, ips=(f"10.0.{len(project)}.{i + 2}",)))
        return found

    @property
    def serving(self) -> str | None:
        """The release the live color runs (None: nothing serves)."""
        if self.live is None or f"{APP}-{self.live}" not in self.projects:
            return None
        return self.projects[f"{APP}-{self.live}"]["services"]["web"]["labels"][L.RELEASE]

    def outcomes(self) -> list[tuple[str, str]]:
        return [(r.id, r.outcome) for r in sorted(self.history, key=lambda r: r.number)]


@dataclasses.dataclass
class FakeRuntime:
    name: str
    engine: "FakeEngine"

    @property
    def compose(self) -> "FakeEngine":
        return self.engine

    def stalled(self) -> str:
        return ""

    def close(self) -> None:
        pass


@dataclasses.dataclass
class FakeLedger:
    world: World

    def records(self, app: str) -> list[Record]:
        return sorted(self.world.history, key=lambda r: r.number)

    def write(self, app: str, record: Record, taken: frozenset[str] = frozenset()) -> Record:
        self.world.did(f"write {record.id} {record.outcome}")
        written = dataclasses.replace(record, volume=f"{app}-release-{record.number}-{len(self.world.history)}",
                                      key=record.key or "k")
        self.world.history.append(written)
        return written

    def rewrite(self, app: str, old: Record, new: Record) -> Record:
        self.world.did(f"rewrite {new.id} {new.outcome}")
        self.world.history = [new if r.volume == old.volume else r for r in self.world.history]
        return new

    @contextlib.contextmanager
    def lock(self, app: str, command: str, warn: Any) -> Iterator[None]:
        if self.world.locked:
            raise LockHeld(f"{app} is locked by {self.world.locked[0]}", "wait")
        self.world.locked.append(command)
        try:
            yield
        finally:
            self.world.locked.remove(command)


@dataclasses.dataclass
class FakeSwitch:
    world: World

    def router(self, app: str) -> "FakeRouter | None":
        return FakeRouter(self.world) if f"{APP}-router" in self.world.projects else None

    def live(self, router: ContainerState) -> str | None:
        return self.world.live

    def control(self, router: ContainerState) -> "FakeRouter":
        return FakeRouter(self.world)

    def published(self, router: ContainerState) -> set[tuple[str, int]]:
        return {("127.0.0.1", 8080)}


@dataclasses.dataclass
class FakeColors:
    world: World

    def up(self, project: str, model: Mapping[str, Any], *, timeout: int | None = None,
           surviving: bool = False) -> None:
        self.world.did(f"up {project}")
        self.world.projects[project] = model

    def ensure_volume(self, name: str, labels: Mapping[str, str], **_opts: Any) -> bool:
        self.world.did("volume")
        return False

    def changes(self, container: ContainerState) -> list[tuple[str, str]]:
        return []

    def remove(self, containers: list[ContainerState]) -> None:
        self.world.did(f"remove {' '.join(c.name for c in containers)}")

    def down(self, project: str) -> None:
        self.world.did(f"down {project}")
        self.world.projects.pop(project, None)

    def containers(self, app: str) -> list[ContainerState]:
        return [c for project in list(self.world.projects) for c in self.world.project_containers(project)]

    def project_containers(self, project: str) -> list[ContainerState]:
        return self.world.project_containers(project)

    def check(self, project: str, model: Mapping[str, Any]) -> None:  # reads only: not in the log
        if f"check {project}" in self.world.failing:
            raise self.world.failing.pop(f"check {project}")
        self.world.checked.append(project)

    def ensure_edge(self, app: str) -> None:
        self.world.did("network")

    def with_objects(self, model: Mapping[str, Any], salt: str) -> dict[str, Any]:
        return dict(model)

    def logs(self, container: ContainerState, tail: int = 20) -> str:
        return f"the last lines of {container.name}"

    @contextlib.contextmanager
    def events(self, _project: str) -> Iterator[Iterator[Mapping[str, Any]]]:
        yield iter(())


@dataclasses.dataclass
class FakeEngine:
    """The engine calls the flow makes besides the Target's."""

    world: World

    def project_containers(self, project: str) -> list[ContainerState]:
        return self.world.project_containers(project)

    def ensure_network(self, name: str, labels: Mapping[str, str]) -> None:
        self.world.did("network")

    def run_check(self, image: str, argv: list[str], env: Mapping[str, str], labels: Mapping[str, str],
                  files: Any = None) -> tuple[int, str]:
        return 0, ""

    def published(self, cid: str) -> set[tuple[str, int]]:
        return set()

    def publish_problem(self, *_args: Any) -> str | None:
        return None

    def image_id(self, ref: str) -> str | None:
        return "sha256:" + ref.replace(":", "-")

    def logs(self, cid: str, tail: int = 20) -> str:
        return ""

    def resolve_image(self, ref: str, pull: bool = True) -> str:
        return "sha256:base"

    @contextlib.contextmanager
    def events(self, _what: str, **_labels: str) -> Iterator[Iterator[Mapping[str, Any]]]:
        yield iter(())

    def marker(self, name: str) -> Any:  # the mark of a stateful recreate
        return self.world.markers.get(name)

    def create_marker(self, name: str, _image: str, labels: Mapping[str, str]) -> None:
        self.world.markers[name] = (name, dict(labels))

    def remove_marker(self, found: str) -> None:
        self.world.markers.pop(found, None)


class FakeRouter:
    """The router's runtime API, in memory: a color's servers pass once its project is up."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.container = ContainerState(id="router", name=f"{APP}-router-router-1", labels={}, status="running",
                                        health=None, exit_code=None, image="", stop_timeout=1)

    where = ""

    @property
    def members(self) -> tuple["FakeRouter", ...]:
        return (self,)

    def open(self) -> "FakeRouter":
        return self

    def close(self) -> None:
        pass

    def live(self) -> str | None:
        return self.world.live

    def switch(self, color: str) -> None:
        self.world.did(f"switch {color}")
        self.world.live = color

    def stats(self) -> BackendStats:
        """Two slots per color: one for each of its containers, the others unresolved."""
        servers = []
        for color in ("blue", "green"):
            found = self.world.project_containers(f"{APP}-{color}")
            for i in range(2):
                held = f"s{i}" in self.world.held.get(color, ())
                if i < len(found):
                    servers.append(Server(backend=color, name=f"s{i}", status="MAINT" if held else "UP", sessions=0,
                                          address=f"{found[i].ips[0]}:8000", check_status="" if held else "L7OK",
                                          check_code=None if held else 200))
                else:
                    servers.append(Server(backend=color, name=f"s{i}", status="MAINT (resolution)", sessions=0,
                                          address=""))
        return BackendStats(servers=tuple(servers), sessions={})

    def arm(self, backend: str, servers: list[str]) -> None:
        pass

    def hold(self, backends: list[str], unresolved_only: bool = False) -> None:
        if "hold" in self.world.failing:
            raise self.world.failing.pop("hold")
        for backend in backends:
            self.world.held[backend] = {"s0", "s1"}

    def admit(self, backend: str, servers: list[str]) -> None:
        self.world.held[backend] = self.world.held.get(backend, set()) - set(servers)

    def fallback_on(self, color: str, token: str) -> int:
        return 0

    def fallback_off(self) -> None:
        pass

    def settings(self) -> dict[str, str]:
        return dict(self.world.projects[f"{APP}-router"]["services"]["router"]["environment"])

    def configure(self, env: Mapping[str, str]) -> None:
        self.world.projects[f"{APP}-router"]["services"]["router"]["environment"].update(env)

    def certificate(self) -> str | None:
        return None


@dataclasses.dataclass(frozen=True)
class Memory:
    """How images reach an in-memory place: they are there (nothing moves)."""

    builds_here: bool = False

    def deliver(self, builder: Any, to: Mapping[str, Any], refs: list[str], progress: Any, say: Any) -> Delivery:
        return Delivery()


# -- the app, and how it is released ------------------------------------------------------------------


def small_app(tmp_path: Path) -> App:
    """One routed service, no watch (settle: 0)."""
    model = {"name": APP, "services": {"web": {"build": {"context": str(make_context(tmp_path, "web")),
                                                         "dockerfile": "Dockerfile"},
                                               "command": None, "entrypoint": None, "ports": [port(8000, "8080")]}}}
    return validate(model, {"router": {"service": "web", "port": 8000, "health": {"timeout": 2}}, "settle": 0},
                    tmp_path)


def prepared(tmp_path: Path, tag: str) -> Prepared:
    router = ImagePlan(service="router", repository="immutdock-router", tag="r0", content_hash="sha256:r0",
                       cached=True, image_id="sha256:router", spec=None)
    return Prepared((image_plan("web", tag, tmp_path, cached=True),), router)


def deployer(app: App, world: World, tmp_path: Path, tag: str) -> Deployer:
    said: list[str] = []
    return Deployer(app, world.target(), said.append, said.append, builder=FakeEngine(world),  # type: ignore[arg-type]
                    prepared=prepared(tmp_path, tag))


# -- release ---------------------------------------------------------------------------------------


def test_a_release_goes_live_and_the_next_retires_the_old_color(tmp_path: Path) -> None:
    app, world = small_app(tmp_path), World()
    first = deployer(app, world, tmp_path, "t1").release()
    assert (first.outcome, first.release, first.color) == ("ok", "r1", "blue")
    assert world.serving == "r1" and world.outcomes() == [("r1", "ok")]
    second = deployer(app, world, tmp_path, "t2").release()
    assert (second.release, second.color) == ("r2", "green")
    assert world.serving == "r2" and f"{APP}-blue" not in world.projects and not world.locked
    assert world.outcomes() == [("r1", "ok"), ("r2", "ok")]
    assert set(second.timings) >= {"plan", "lock", "cleanup", "shared", "router", "start", "gate", "hooks", "record",
                                   "switch", "settle", "drain", "retire", "total"}


def test_what_the_target_refuses_stops_the_release_at_plan_before_anything_changes(tmp_path: Path) -> None:
    """A Swarm refuses a model it cannot run (Colors.check): asked at plan time, for the new
    color and the router, so a release stops there (exit 2) with nothing built or started; a
    no-op plan asks nothing."""
    from immutdock.errors import ConfigError

    app, world = small_app(tmp_path), World()
    world.fail(f"check {APP}-blue", ConfigError("services.web.ports[0]", "a Swarm cannot", "fix it"))
    with pytest.raises(ConfigError):
        deployer(app, world, tmp_path, "t1").release()
    assert world.checked == [f"{APP}-router"] and not world.log and not world.projects and not world.history
    deployer(app, world, tmp_path, "t1").release()
    assert world.checked == [f"{APP}-router", f"{APP}-router", f"{APP}-blue"] and world.serving == "r1"
    assert deployer(app, world, tmp_path, "t1").release().outcome == "noop"
    assert len(world.checked) == 3


def test_the_idle_colors_servers_are_held_between_releases_and_none_of_the_live_colors(tmp_path: Path) -> None:
    """Held, HAProxy does not check a server before the gate lets it in once its container
    runs; a held slot in the live color would take no request when its name resolves anew."""
    app, world = small_app(tmp_path), World()
    deployer(app, world, tmp_path, "t1").release()
    assert world.live == "blue" and world.held == {"blue": set(), "green": {"s0", "s1"}}
    deployer(app, world, tmp_path, "t2").release()
    assert world.live == "green" and world.held == {"blue": {"s0", "s1"}, "green": set()}


def test_a_hold_the_router_refuses_is_warned_of_and_the_release_goes_on(tmp_path: Path) -> None:
    app, world = small_app(tmp_path), World()
    said: list[str] = []
    world.fail("hold")  # the router step's: the gate arms the servers as they resolve
    Deployer(app, world.target(), said.append, said.append, builder=FakeEngine(world),  # type: ignore[arg-type]
             prepared=prepared(tmp_path, "t1")).release()
    assert world.live == "blue" and any("could not hold blue's servers" in line for line in said), said


def released(tmp_path: Path, world: World | None = None) -> tuple[App, World]:
    """The app with r1 live on blue."""
    app, world = small_app(tmp_path), world or World()
    deployer(app, world, tmp_path, "t1").release()
    world.log.clear()
    return app, world


# step -> (the operation that fails in it, the undos that run, newest first)
BEFORE_THE_SWITCH = {
    "shared": ("network", ["write r2 failed"]),
    "start": ("up shop-green", ["down shop-green", "write r2 failed"]),
    "gate": ("", ["down shop-green", "write r2 failed"]),  # its containers exit as they start
    "record": ("write r2 switching", ["down shop-green", "write r2 failed"]),
    "switch": ("switch green", ["down shop-green", "rewrite r2 failed"]),
}


@pytest.mark.parametrize("step", list(BEFORE_THE_SWITCH))
def test_a_failure_before_the_switch_undoes_exactly_the_steps_taken_newest_first(tmp_path: Path, step: str) -> None:
    app, world = released(tmp_path)
    failing, undos = BEFORE_THE_SWITCH[step]
    if failing:
        world.fail(failing)
    else:
        world.broken.add(f"{APP}-green")
    with pytest.raises(ImmutdockError) as info:
        deployer(app, world, tmp_path, "t2").release()
    assert info.value.exit_code == 1, info.value
    assert world.log[-len(undos):] == undos, world.log
    assert "switch green" not in world.log and "down shop-blue" not in world.log
    assert world.live == "blue" and world.serving == "r1" and f"{APP}-green" not in world.projects
    assert world.outcomes() == [("r1", "ok"), ("r2", "failed")] and not world.locked


def test_a_failed_first_router_is_undone_and_recorded(tmp_path: Path) -> None:
    app, world = small_app(tmp_path), World()
    world.fail(f"up {APP}-router")
    with pytest.raises(ImmutdockError) as info:
        deployer(app, world, tmp_path, "t1").release()
    assert info.value.exit_code == 1
    # The new color started beside the router (together): both are gone, then the record.
    assert f"down {APP}-router" in world.log and world.log[-1] == "write r1 failed", world.log
    assert world.log.index(f"up {APP}-blue") < world.log.index(f"down {APP}-blue"), world.log
    assert world.projects == {} and world.outcomes() == [("r1", "failed")]


@pytest.mark.parametrize("failing", ["rewrite r2 ok", f"down {APP}-blue"])
def test_nothing_after_the_switch_is_undone_and_the_exit_is_4(tmp_path: Path, failing: str) -> None:
    app, world = released(tmp_path)
    world.fail(failing)
    with pytest.raises(ImmutdockError) as info:
        deployer(app, world, tmp_path, "t2").release()
    assert info.value.exit_code == 4, info.value
    assert world.live == "green" and world.serving == "r2" and "down shop-green" not in world.log
    assert "status --reap" in (info.value.hint or ""), info.value.hint  # the old color is left to retire
    assert not world.locked


@pytest.mark.parametrize("failing", ["network", f"up {APP}-green", "write r2 switching"])
def test_an_interrupt_undoes_what_was_taken(tmp_path: Path, failing: str) -> None:
    app, world = released(tmp_path)
    world.fail(failing, KeyboardInterrupt())
    with pytest.raises(ImmutdockError) as info:
        deployer(app, world, tmp_path, "t2").release()
    assert info.value.exit_code == 130, info.value
    assert world.log[-1] == "write r2 interrupted" and "switch green" not in world.log
    assert world.serving == "r1" and f"{APP}-green" not in world.projects and not world.locked


def test_the_same_file_again_is_a_noop_that_changes_nothing(tmp_path: Path) -> None:
    app, world = released(tmp_path)
    again = deployer(app, world, tmp_path, "t1").release()
    assert again.outcome == "noop" and world.log == []


# -- rollback and heal -----------------------------------------------------------------------------


def test_a_rollback_reruns_the_previous_release_as_a_new_one(tmp_path: Path) -> None:
    app, world = released(tmp_path)
    deployer(app, world, tmp_path, "t2").release()
    back = deployer(app, world, tmp_path, "t2").rollback(None)
    assert (back.release, back.color, back.source, back.kind) == ("r3", "blue", "r1", "rollback")
    assert world.serving == "r3" and f"{APP}-green" not in world.projects
    assert world.projects[f"{APP}-blue"]["services"]["web"]["image"] == "shop-web:t1"
    assert world.outcomes()[-1] == ("r3", "ok")


def test_a_rollback_that_fails_its_gate_keeps_what_serves(tmp_path: Path) -> None:
    app, world = released(tmp_path)
    deployer(app, world, tmp_path, "t2").release()
    world.broken.add(f"{APP}-blue")
    with pytest.raises(ImmutdockError) as info:
        deployer(app, world, tmp_path, "t2").rollback(None)
    assert info.value.exit_code == 1
    assert world.serving == "r2" and f"{APP}-blue" not in world.projects
    assert world.outcomes()[-1] == ("r3", "failed")


def test_a_heal_replaces_the_live_release_with_fresh_containers_of_it(tmp_path: Path) -> None:
    app, world = released(tmp_path)
    healed = deployer(app, world, tmp_path, "t1").rollback(None, heal=True)
    assert (healed.release, healed.color, healed.source, healed.kind) == ("r2", "green", "r1", "heal")
    assert world.serving == "r2" and f"{APP}-blue" not in world.projects
    assert world.projects[f"{APP}-green"]["services"]["web"]["image"] == "shop-web:t1"


# -- a fleet ---------------------------------------------------------------------------------------


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """What the fleet's builder plans and builds, set by tag (the builds themselves are the
    engine's: immutdock.apply.build is tested with it)."""
    router = prepared(tmp_path, "-").router
    monkeypatch.setattr("immutdock.apply.release.Deployer._router_image_plan", lambda self, pull=True: router)
    monkeypatch.setattr("immutdock.apply.release.Deployer.build", lambda self, images, router_plan: list(images))

    def tag(name: str) -> None:
        monkeypatch.setattr("immutdock.apply.build.plan_app_images", lambda *_a, **_k: [
            image_plan("web", name, tmp_path, cached=True)])
    return tag


def fleet(app: App, worlds: list[World], parallel: int = 1, canary: int = 0) -> Fleet:
    policy = Policy(name="prod", hosts=tuple(w.name for w in worlds), parallel=parallel, canary=canary)
    return Fleet(app, policy, [w.target() for w in worlds], FakeEngine(worlds[0]), lambda _m: None,  # type: ignore[arg-type]
                 lambda _m: None)


def test_a_fleet_stops_at_the_first_failing_host_and_leaves_the_hosts_not_started_untouched(tmp_path: Path,
                                                                                            builds: Any) -> None:
    worlds = [World(f"ssh://h{i}") for i in range(3)]
    app = small_app(tmp_path)
    builds("t1")
    fleet(app, worlds).release()
    assert [w.serving for w in worlds] == ["r1", "r1", "r1"]
    for w in worlds:
        w.log.clear()
    builds("t2")
    worlds[1].broken.add(f"{APP}-green")
    with pytest.raises(ImmutdockError) as info:
        fleet(app, worlds).release()
    assert info.value.exit_code == 1
    assert [w.serving for w in worlds] == ["r2", "r1", "r1"]
    assert worlds[1].outcomes()[-1] == ("r2", "failed") and worlds[2].log == [] and worlds[2].outcomes() == [
        ("r1", "ok")]
    rows = {r["host"]: r["outcome"] for r in info.value.data["hosts"]}
    assert rows == {"ssh://h0": "ok", "ssh://h1": "failed", "ssh://h2": "not started"}
    assert "ssh://h2 was not started" in (info.value.hint or "")
    assert not any(w.locked for w in worlds)


def test_a_fleet_whose_host_is_locked_changes_no_host(tmp_path: Path, builds: Any) -> None:
    worlds = [World(f"ssh://h{i}") for i in range(2)]
    app = small_app(tmp_path)
    builds("t1")
    worlds[1].locked.append("release")  # another release holds it
    with pytest.raises(LockHeld):
        fleet(app, worlds).release()
    assert [w.log for w in worlds] == [[], []] and worlds[0].locked == []


# -- reading a place -------------------------------------------------------------------------------


def test_status_and_history_read_a_place_through_its_target(tmp_path: Path) -> None:
    from immutdock.apply.status import describe, gather
    from immutdock.targets.observe import records

    app, world = released(tmp_path)
    state, stats = gather(world.target(), APP)
    report = describe(app, state, stats)
    assert (report["live_color"], report["live_release"], report["problem"]) == ("blue", "r1", None)
    assert report["router"]["up"] == 1
    assert [r.id for r in records(world.target(), APP)] == ["r1"]


def test_the_gate_and_the_watch_see_the_new_color_through_the_targets_colors(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A Swarm's tasks run on many nodes: the manager's engine alone does not see them."""
    app, world = small_app(tmp_path), World()

    def blind(_self: object, _project: str) -> list[ContainerState]:
        raise AssertionError("the flow asked the engine for a project's containers")

    monkeypatch.setattr(FakeEngine, "project_containers", blind)
    done = deployer(app, world, tmp_path, "t1").release()
    assert (done.outcome, done.color) == ("ok", "blue") and world.serving == "r1"


def test_stateful_services_that_run_as_defined_are_left_alone_and_others_are_brought_up(tmp_path: Path) -> None:
    def app_with_db(env: str, cache: bool = False) -> App:
        model = {"name": APP, "services": {
            "web": {"build": {"context": str(make_context(tmp_path, "web")), "dockerfile": "Dockerfile"},
                    "command": None, "entrypoint": None, "ports": [port(8000, "8080")]},
            "db": {"image": "busybox:latest", "command": ["sleep", "infinity"], "environment": {"MODE": env}}}}
        if cache:
            model["services"]["cache"] = {"image": "busybox:latest", "command": ["sleep", "infinity"]}
        return validate(model, {"router": {"service": "web", "port": 8000, "health": {"timeout": 2}},
                                "stateful": ["db", "cache"] if cache else ["db"], "settle": 0}, tmp_path)

    world = World()
    deployer(app_with_db("a"), world, tmp_path, "t1").release()
    assert f"up {APP}-state" in world.log
    world.log.clear()
    deployer(app_with_db("a"), world, tmp_path, "t2").release()  # db runs as defined: compose has nothing to do
    assert f"up {APP}-blue" not in world.log and f"up {APP}-green" in world.log
    assert f"up {APP}-state" not in world.log, world.log
    world.broken.add(f"{APP}-state")  # db exited
    world.log.clear()
    deployer(app_with_db("a"), world, tmp_path, "t3").release()
    assert f"up {APP}-state" in world.log, world.log
    world.broken.discard(f"{APP}-state")
    world.log.clear()
    deployer(app_with_db("b"), world, tmp_path, "t4").release()  # db's definition changed
    assert f"up {APP}-state" in world.log, world.log
    deployer(app_with_db("b", cache=True), world, tmp_path, "t5").release()
    world.log.clear()
    deployer(app_with_db("b"), world, tmp_path, "t6").release()  # cache left the file: compose removes it
    assert f"up {APP}-state" in world.log, world.log
    assert set(world.projects[f"{APP}-state"]["services"]) == {"db"}


def test_once_its_gate_and_watch_are_over_the_live_color_is_checked_every_2s_the_other_every_50ms(
        tmp_path: Path) -> None:
    app, world = small_app(tmp_path), World()

    def inter() -> tuple[str, str]:
        env = world.projects[f"{APP}-router"]["services"]["router"]["environment"]
        return env["IMMUTDOCK_BLUE_INTER"], env["IMMUTDOCK_GREEN_INTER"]

    deployer(app, world, tmp_path, "t1").release()
    assert inter() == ("2s", "50ms")
    second = deployer(app, world, tmp_path, "t2").release()
    assert inter() == ("50ms", "2s") and "checks" in second.timings
