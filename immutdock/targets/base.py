"""The questions a place that runs an app answers, one small interface each, bundled in a
Target. The release flow (immutdock.apply.release, immutdock.apply.steps) asks them; it never asks what
kind of place it releases to.

| question                          | interface | a docker engine (local, or a host over SSH)      | Docker Swarm (targets/swarm.py, as it is built)      |
|-----------------------------------|-----------|--------------------------------------------------|-------------------------------------------------------|
| how do engine calls and compose   | Runtime   | the docker socket or DOCKER_HOST; for a host, its | the manager's engine (local, or over SSH), and each   |
| run, and how do they end?         |           | engine through one SSH connection (ssh.py)        | node's for per-node work (shipping layers)            |
| where do history and the lock     | Ledger    | labelled volumes (ledger.py), a lock container    | BUILT: cluster-wide objects, labelled Swarm configs   |
| live?                             |           | (lock.py), on that engine                         | for the records, one config named for the lock        |
| how does traffic switch?          | Switch    | the HAProxy router container (router.py): its     | the router as a Swarm service with host-mode ports;   |
|                                   |           | live link, arm, stats, switch                     | `control` answers for all its tasks: the switch runs  |
|                                   |           |                                                   | in every one, stats join theirs                       |
| what is a color?                  | Colors    | a compose project (up, down, its containers       | a stack (`docker stack deploy`, `docker stack rm`),   |
|                                   |           | found by label)                                   | its tasks found by label                              |
| how do images arrive?             | Images    | the local engine builds them itself; a host gets  | shipped to each node (missing layers: the nodes are   |
|                                   |           | them shipped (missing layers) or pulled through   | the places delivered to), or pushed to the target's   |
|                                   |           | the target's registry (targets/images.py)         | registry and pulled by the nodes                      |

A delivery serves several places at once (one `docker save` or one push for every host): a
fleet hands each Images all the places that share it.

Every method takes plain data and returns plain data or immutdock's own state types; none
prints (progress goes through the callbacks the caller gives)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

from immutdock.plan.state import ContainerState

if TYPE_CHECKING:
    from immutdock.gateways.compose import Compose
    from immutdock.gateways.engine import Engine
    from immutdock.identity.redact import Redactor
    from immutdock.targets.images import Delivery
    from immutdock.targets.ledger import Record
    from immutdock.targets.lock import Holder
    from immutdock.apply.router import Router

Say = Callable[[str], None]


class Runtime(Protocol):
    """How engine calls and compose run here, and how they end."""

    name: str  # how the place is named to the user: "local", "ssh://host"

    @property
    def engine(self) -> Engine: ...
    @property
    def compose(self) -> Compose: ...
    @property
    def nodes(self) -> Mapping[str, Engine]:
        """The engines that hold the place's images and run its containers (name -> engine):
        its own engine, or every listed node of a swarm."""
        ...
    def stalled(self) -> str:
        """Why the place stopped answering ("" while it answers)."""
        ...
    def close(self) -> None: ...


class Ledger(Protocol):
    """Where the release history and the lock live."""

    def records(self, app: str) -> list[Record]: ...
    def write(self, app: str, record: Record, taken: frozenset[str] = frozenset()) -> Record: ...
    def rewrite(self, app: str, old: Record, new: Record) -> Record: ...
    def tidy(self, app: str, records: list[Record], redactor: Redactor,
             gone: Callable[[str], bool] | None = None) -> list[str]:
        """Rewrite the records that should not stay as they are (immutdock.targets.ledger.tidy)."""
        ...
    def lock(self, app: str, command: str, warn: Say) -> AbstractContextManager[None]: ...
    def unlock(self, app: str, force: bool, warn: Say) -> Holder | None:
        """Free the lock after saying who held it (a holder alive on this machine needs `force`)."""
        ...
    def apps(self) -> list[str]:
        """Every app with a record here, sorted."""
        ...
    def forget(self, app: str) -> int:
        """Remove every record of the app (its history ends: the next release is r1); how many."""
        ...


class Images(Protocol):
    """How images the builder holds reach this place."""

    @property
    def builds_here(self) -> bool:
        """The place's own engine builds (nothing to deliver: its release builds itself)."""
        ...
    def deliver(self, builder: Engine, to: Mapping[str, Engine], refs: list[str],
                progress: Callable[[str, int, int, int], None], say: Say) -> Delivery:
        """Make every place of `to` (name -> its engine) hold `refs` as `builder` has them
        (`progress`: per transfer; `say`: what is done)."""
        ...


class Switch(Protocol):
    """How traffic switches: the router of an app, when one runs."""

    def router(self, app: str) -> Router | None:
        """The app's running router, or None."""
        ...
    def live(self, router: ContainerState) -> str | None:
        """The color the router (running or not) sends traffic to."""
        ...
    def control(self, router: ContainerState) -> Router:
        """The runtime API of the router container (arm, stats, switch, fallback, certificate)."""
        ...
    def published(self, router: ContainerState) -> set[tuple[str, int]]:
        """The addresses the router container holds (its own: no probe needs them free)."""
        ...


class Colors(Protocol):
    """What a color (or the state project, or the router) is: started, removed, found."""

    def up(self, project: str, model: Mapping[str, Any], *, timeout: int | None = None,
           surviving: bool = False) -> None:
        """Start the project, replacing only what changed; `timeout`: wait that long for it to
        be healthy; `surviving`: what was started finishes even when immutdock is killed."""
        ...
    def down(self, project: str) -> None: ...
    def check(self, project: str, model: Mapping[str, Any]) -> None:
        """Refuse (ConfigError, exit 2) a project this target cannot run as it is written,
        before anything changes: what `up` would refuse only once it is reached."""
        ...
    def ensure_volume(self, name: str, labels: Mapping[str, str], driver: str | None = None,
                      driver_opts: Mapping[str, str] | None = None) -> bool:
        """A named volume exists where the services that mount it run (made once, never removed
        or changed); True when it was made now."""
        ...
    def containers(self, app: str) -> list[ContainerState]:
        """Every container of the app, whatever its role, found by label."""
        ...
    def project_containers(self, project: str) -> list[ContainerState]:
        """The containers of one color, the state or the router (what the gate and the watch see)."""
        ...
    def ensure_edge(self, app: str) -> None:
        """The network the app's colors, state and router share exists (render.edge_network)."""
        ...
    def logs(self, container: ContainerState, tail: int = 20) -> str:
        """The last log lines of one of them, "" when none can be read."""
        ...
    def changes(self, container: ContainerState) -> list[tuple[str, str]]:
        """The files changed in one of them since it started (`docker diff`: kind, path)."""
        ...
    def remove(self, containers: list[ContainerState]) -> None:
        """Stop and remove these containers where they run (a project that keeps its tasks
        running, a swarm's, replaces them with fresh ones)."""
        ...
    def with_objects(self, model: Mapping[str, Any], salt: str) -> dict[str, Any]:
        """The model with what names its secrets and configs here recorded in it (on a swarm,
        their values' salted digests: immutdock.plan.objects), so that a rollback runs its
        release's values; a model that has them keeps them. As it is where compose reads the
        files itself."""
        ...
    def drop_objects(self, app: str, models: Iterable[Mapping[str, Any]]) -> list[str]:
        """The objects made for the app's secrets and configs (a swarm's) that no service uses
        and none of `models` (the releases that can still be rolled back to) runs with,
        removed; their names. None where compose reads the files itself."""
        ...
    def task_history(self, app: str) -> list[tuple[Engine, ContainerState]]:
        """The stopped containers the place keeps of the app's ended tasks (a swarm's task
        history: a stateful service's replaced tasks, a job's), each with its node's engine;
        none where every container is the app's own (a compose project's)."""
        ...
    def volume_nodes(self, app: str, engine_volume: str, stateful: Sequence[str]) -> list[tuple[str, Engine]]:
        """The engines that hold a named volume of the app, each with its name: the engine
        itself; on a swarm, the node the stateful services that mount it (`stateful`, of the
        file) are kept on ([] before their first release), or, for a volume no stateful
        service mounts, every listed node (each node's is its own)."""
        ...
    def paused(self, containers: Sequence[ContainerState], why: str, say: Say,
               after_failure: bool = True) -> AbstractContextManager[None]:
        """These containers of stateful services stopped for the length of a `with` (nothing
        started in their place meanwhile), running again after it (a start Ctrl-C does not
        cut); without `after_failure`, only when the block succeeded."""
        ...
    def engine_of(self, container: ContainerState) -> Engine:
        """The engine that runs one of them (a swarm's: its node's), for what is done inside
        it (exec, a log stream)."""
        ...
    def drop_networks(self, app: str) -> list[str]:
        """The networks made for the app (its edge network), removed once nothing uses them;
        their names."""
        ...
    def events(self, project: str) -> AbstractContextManager[Iterator[Mapping[str, Any]]]:
        """The engine's events of the project's containers as they happen (die, health_status...),
        for the length of a `with`; a place that cannot tell gives none (the watch looks anyway)."""
        ...


@dataclass(frozen=True)
class Target:
    """One place an app runs, its answers bundled."""

    name: str
    runtime: Runtime
    images: Images
    ledger: Ledger
    switch: Switch
    colors: Colors

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    def close(self) -> None:
        self.runtime.close()
