"""Shared builders for the unit tests: compose models in the shape `docker compose config
--format json` prints, Apps validated from them, and hand-made engine observations."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

from immutdock import labels as L
from immutdock.apply.build import ImagePlan
from immutdock.config.validate import validate as validate_model
from immutdock.config.model import App, BuildSpec
from immutdock.errors import ConfigError
from immutdock.gateways.engine import ContainerState
from immutdock.identity.redact import Redactor
from immutdock.plan import render
from immutdock.targets.ledger import Record
from immutdock.targets.observe import AppState

APP = "shop"


@contextlib.contextmanager
def raises_config(path: str) -> Iterator[pytest.ExceptionInfo[ConfigError]]:
    """Expect a ConfigError (exit code 2) whose key path is `path` and whose message names it."""
    with pytest.raises(ConfigError) as info:
        yield info
    err = info.value
    assert err.exit_code == 2
    assert err.path == path, f"path {err.path!r} != {path!r} ({err})"
    assert str(err).startswith(f"{path}: "), str(err)


def make_context(root: Path, name: str, dockerfile: str = "Dockerfile") -> Path:
    ctx = root / name
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / dockerfile).write_text("FROM busybox:1.36\nCOPY . /app\n")
    return ctx


def build(ctx: Path, args: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"context": str(ctx), "dockerfile": "Dockerfile"}
    if args is not None:
        out["args"] = dict(args)
    out.update(extra)
    return out


def named_volume(source: str, target: str) -> dict[str, Any]:
    return {"type": "volume", "source": source, "target": target, "volume": {}}


def anonymous_volume(target: str) -> dict[str, Any]:
    return {"type": "volume", "target": target, "volume": {}}


def bind(source: str, target: str, read_only: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "bind", "source": source, "target": target, "bind": {"create_host_path": True}}
    if read_only:
        out["read_only"] = True
    return out


def port(target: int, published: str) -> dict[str, Any]:
    return {"mode": "ingress", "target": target, "published": published, "protocol": "tcp"}


def minimal_model(tmp_path: Path, **web: Any) -> dict[str, Any]:
    """One built service `web` (plus whatever keys are given for it)."""
    ctx = make_context(tmp_path, "web")
    return {"name": APP, "services": {"web": {"build": build(ctx), "command": None, "entrypoint": None, **web}}}


def full_model(tmp_path: Path) -> dict[str, Any]:
    """A realistic app: routed `web`, a `worker`, a stateful `db`, an image-only swapped `cache`."""
    web = make_context(tmp_path, "web")
    worker = make_context(tmp_path, "worker")
    (tmp_path / "conf").mkdir(exist_ok=True)
    (tmp_path / "api_key.txt").write_text("s3cr3t\n")
    return {
        "name": APP,
        "services": {
            "web": {
                "build": build(web, {"VERSION": "1.2", "DEBUG": None}),
                "command": None, "entrypoint": None,
                "depends_on": {"db": {"condition": "service_healthy", "required": True},
                               "worker": {"condition": "service_started", "required": True}},
                "environment": {"DB_HOST": "db"},
                "labels": {"team": "shop"},
                "networks": {"back": None, "front": None},
                "volumes": [named_volume("uploads", "/uploads"), bind(str(tmp_path / "conf"), "/conf", True)],
                "secrets": [{"source": "api_key"}],
                "x-note": "an extension field",
            },
            "worker": {
                "build": build(worker),
                "command": ["python", "-m", "worker"], "entrypoint": None,
                "depends_on": {"db": {"condition": "service_started", "required": True}},
                "networks": {"back": None, "shared": None},
            },
            "cache": {"image": "varnish:7", "command": None, "entrypoint": None},
            "db": {
                "image": "postgres:16", "command": None, "entrypoint": None,
                "container_name": "shop-db",
                "ports": [port(5432, "5432")],
                "volumes": [named_volume("pg", "/var/lib/postgresql/data"), anonymous_volume("/var/tmp"),
                            bind(str(tmp_path / "conf"), "/etc/pg")],
                "networks": {"back": None},
            },
        },
        "volumes": {"uploads": {"name": f"{APP}_uploads"}, "pg": {"name": f"{APP}_pg"}, "unused": {"name": f"{APP}_unused"}},
        "networks": {"back": {"name": f"{APP}_back", "ipam": {}}, "front": {"name": f"{APP}_front", "ipam": {}},
                     "shared": {"name": "shared-net", "external": True}, "default": {"name": f"{APP}_default", "ipam": {}}},
        "secrets": {"api_key": {"name": f"{APP}_api_key", "file": str(tmp_path / "api_key.txt")}},
    }


def full_block() -> dict[str, Any]:
    return {"router": {"service": "web", "port": 8000, "health": {"path": "/healthz", "timeout": 30}},
            "stateful": ["db"], "keep": 3}


def validate(model: Mapping[str, Any], block: Any, tmp_path: Path) -> App:
    return validate_model(copy.deepcopy(dict(model)), copy.deepcopy(block), tmp_path / "compose.yaml")


def full_app(tmp_path: Path, block: Any = None) -> App:
    return validate(full_model(tmp_path), full_block() if block is None else block, tmp_path)


IMAGES = {"web": f"{APP}-web:aaaaaaaaaaaa", "worker": f"{APP}-worker:bbbbbbbbbbbb"}


def image_plan(service: str, tag: str, tmp_path: Path, cached: bool = False) -> ImagePlan:
    spec = BuildSpec(context=tmp_path, dockerfile=tmp_path / "Dockerfile")
    return ImagePlan(service=service, repository=f"{APP}-{service}", tag=tag, content_hash="sha256:" + tag,
                     cached=cached, image_id=None, spec=spec)


# -- engine observations ---------------------------------------------------------------

def container(name: str, *, status: str = "running", health: str | None = None, exit_code: int | None = None,
              image: str = "img:1", labels: Mapping[str, str] | None = None, service: str = "") -> ContainerState:
    all_labels = dict(labels or {})
    if service:
        all_labels.setdefault(L.COMPOSE_SERVICE, service)
    return ContainerState(id=f"id-{name}", name=name, labels=all_labels, status=status, health=health,
                          exit_code=exit_code, image=image, stop_timeout=10)


def color_container(color: str, release: str, config_hash: str, *, service: str = "web", status: str = "running",
                    exit_code: int | None = None, image: str | None = None) -> ContainerState:
    labels = {L.APP: APP, L.ROLE: "color", L.COLOR: color, L.RELEASE: release, L.CONFIG_HASH: config_hash,
              L.COMPOSE_PROJECT: f"{APP}-{color}", L.COMPOSE_SERVICE: service}
    return container(f"{APP}-{color}-{service}-1", status=status, exit_code=exit_code,
                     image=image or f"{APP}-{service}:{release}", labels=labels)


def router_container(status: str = "running") -> ContainerState:
    return container(f"{APP}-router-router-1", status=status, image="immutdock-router:1",
                     labels={L.APP: APP, L.ROLE: "router"})


def state_container(service: str = "db", status: str = "running", config_hash: str | None = None) -> ContainerState:
    labels = {L.APP: APP, L.ROLE: "state", L.COMPOSE_PROJECT: f"{APP}-state"}
    if config_hash:
        labels[L.CONFIG_HASH] = config_hash
    return container(f"{APP}-state-{service}-1", status=status, service=service, labels=labels)


RUNNING_DB = (state_container("db"),)
REDACTOR = Redactor("00" * 16)  # a fixed salt: digests the same in every run


def running_db(app: App) -> tuple[ContainerState, ...]:
    """The app's db running exactly what the file says (its config-hash label matches)."""
    label = render.state_project(app, IMAGES, REDACTOR)["services"]["db"]["labels"][L.CONFIG_HASH]
    return (state_container("db", config_hash=label),)


def record(number: int, *, outcome: str = "ok", color: str = "blue", images: Mapping[str, str] | None = None,
           kind: str = "release", config_hash: str = "sha256:h") -> Record:
    return Record(number=number, kind=kind, color=color,
                  images=dict(images if images is not None else {"web": f"{APP}-web:r{number}"}),
                  config_hash=config_hash, created=f"2024-01-{number:02d}T00:00:00Z", outcome=outcome)


def app_state(*, records: tuple[Record, ...] = (), router: ContainerState | None = None, live: str | None = None,
              blue: tuple[ContainerState, ...] = (), green: tuple[ContainerState, ...] = (),
              state: tuple[ContainerState, ...] = ()) -> AppState:
    return AppState(app=APP, records=records, router=router, live_color=live, colors={"blue": blue, "green": green},
                    state=state)
