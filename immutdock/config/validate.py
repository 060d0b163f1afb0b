"""Compose's normalized model of the user's files -> a validated, frozen `App` (pure, but for
looking at the build contexts and Dockerfiles the files name): each service's role, its build,
its project binds to bake, and what a blue/green release refuses. `compose_file.load` imports
this module while compose reads the files."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from immutdock.config import binds, bounds, infer
from immutdock.config.compose_file import looks_secret
from immutdock.config.model import App, BuildSecret, BuildSpec, Service, Settings, VolumeDump, frozen_mapping
from immutdock.config.settings import BLOCK, parse_settings
from immutdock.errors import ConfigError


def validate(model: Mapping[str, Any], raw_block: Any, compose_file: Path,
             inactive: Mapping[str, list[str]] | None = None, absolute: frozenset[str] = frozenset(),
             relative: frozenset[str] = frozenset()) -> App:
    """Pure: compose's normalized model (+ the x-immutdock block) -> App. `inactive`: the
    services compose left out because their profiles are not active, each with its profiles;
    `absolute`: the key paths of build contexts the files give as absolute paths (others must
    stay inside the compose file's folder); `relative`: the bind sources the files write relative
    to the project."""
    services_raw: Mapping[str, Any] = model.get("services") or {}
    inactive = inactive or {}
    if not services_raw and inactive:
        profiles = ",".join(sorted({p for ps in inactive.values() for p in ps}))
        raise ConfigError("services", f"every service is in a profile that is not active "
                                      f"({', '.join(f'{k}: {v}' for k, v in sorted(inactive.items()))})",
                          f"activate them (COMPOSE_PROFILES={profiles} immutdock ...) or remove profiles: "
                          "from the services immutdock releases")
    if not services_raw:
        raise ConfigError("services", "no services defined", "add at least one service")
    roles: tuple[infer.Role, ...] = ()
    block = raw_block
    project = infer.Project(compose_file.parent, _marked(raw_block), relative)
    if raw_block is None or isinstance(raw_block, Mapping):  # else parse_settings names the problem
        block, roles = infer.resolve(raw_block or {}, services_raw, project)
    settings = parse_settings(block, set(services_raw), inactive)
    secrets = model.get("secrets") or {}
    services: dict[str, Service] = {}
    warnings: list[str] = []
    data = binds.data_sources(services_raw, compose_file.parent, settings.stateful, settings.bind_data, relative,
                              infer.DATA_PATHS)
    for name, svc in services_raw.items():
        services[name] = _service(name, svc, services_raw, settings, secrets, compose_file.parent, absolute,
                                  relative, warnings, data)
    for name in settings.router.services if settings.router else ():
        if services[name].definition.get("network_mode"):
            raise ConfigError(f"services.{name}.network_mode", "a routed service must join networks",
                              "remove network_mode")
    bounds.app_name(str(model.get("name")))
    named = {n: s.build is not None or not s.stateful or bool(s.bakes) for n, s in services.items()}  # <app>-<service> images
    bounds.derived_names(str(model.get("name")), named, settings.router.services if settings.router else (),
                         [t.registry for t in settings.targets.values() if t.registry])
    settings = dataclasses.replace(settings, volumes=frozen_mapping(
        {key: _dumped_by(key, dump, model.get("volumes") or {}, services) for key, dump in settings.volumes.items()}))
    return App(name=str(model.get("name")), compose_file=compose_file, project_dir=compose_file.parent,
               services=frozen_mapping(services), volumes=frozen_mapping(model.get("volumes") or {}),
               secrets=frozen_mapping(secrets), networks=frozen_mapping(model.get("networks") or {}),
               configs=frozen_mapping(model.get("configs") or {}),
               settings=settings, roles=roles, warnings=tuple(warnings), profiles=active_profiles())


def _service(name: str, svc: Mapping[str, Any], services_raw: Mapping[str, Any], settings: Settings,
             secrets: Mapping[str, Any], project_dir: Path, absolute: frozenset[str], relative: frozenset[str],
             warnings: list[str], data: tuple[str, ...]) -> Service:
    """One service, checked for its role; its project binds taken out of its definition to be
    baked into its image (what is left said in `warnings`)."""
    stateful = name in settings.stateful
    bounds.replicas(name, svc, stateful)
    definition = dict(svc)
    baked, kept, said = binds.bakes(name, svc, project_dir, stateful, data, relative, infer.DATA_PATHS)
    if svc.get("volumes"):
        definition["volumes"] = kept
    warnings += said
    if not stateful:
        routed = settings.router is not None and name in settings.router.services
        if routed:
            definition.pop("ports", None)  # the router publishes them
        warnings += _drop_container_name(name, definition, services_raw)
        _check_swapped(name, definition, routed)
    build = _build_spec(name, svc["build"], secrets, project_dir, absolute) if svc.get("build") else None
    if build is None and not svc.get("image"):
        raise ConfigError(f"services.{name}", "has neither build: nor image:", "add one of them")
    return Service(name=name, build=build, image=svc.get("image"), stateful=stateful,
                   definition=frozen_mapping(definition), bakes=baked,
                   ports=tuple(frozen_mapping(p) for p in svc.get("ports") or () if isinstance(p, Mapping)))


def _marked(raw_block: Any) -> tuple[str, ...]:
    """The paths x-immutdock.binds.data marks as data, as written (parse_settings checks them)."""
    binds_block = raw_block.get("binds") if isinstance(raw_block, Mapping) else None
    data = binds_block.get("data") if isinstance(binds_block, Mapping) else None
    return tuple(d for d in data if isinstance(d, str)) if isinstance(data, list) else ()


def _dumped_by(key: str, dump: VolumeDump, volumes: Mapping[str, Any], services: Mapping[str, Service]) -> VolumeDump:
    """The dump's service: the stateful service that mounts volume `key` (the one named, or the
    only one)."""
    path = f"{BLOCK}.volumes.{key}"
    if key not in volumes:
        raise ConfigError(path, "is not a named volume of this file",
                          f"use one of: {', '.join(sorted(volumes)) or '(none: declare it under volumes:)'}")
    mounting = [s.name for s in services.values() if s.stateful and any(
        isinstance(m, Mapping) and m.get("type") == "volume" and m.get("source") == key
        for m in s.definition.get("volumes") or [])]
    if dump.service:
        if dump.service not in mounting:
            raise ConfigError(f"{path}.service", f"{dump.service!r} is not a stateful service that mounts {key}",
                              f"name one that does: {', '.join(mounting) or '(none)'}")
        return dump
    if len(mounting) != 1:
        raise ConfigError(f"{path}.service", f"{len(mounting)} stateful services mount {key}" +
                          (f" ({', '.join(mounting)})" if mounting else ""),
                          "name the one whose container runs the dump, e.g. service: db" if mounting else
                          "a dump runs in the stateful service that mounts the volume: mount it in one")
    return dataclasses.replace(dump, service=mounting[0])


def _build_spec(name: str, build: Mapping[str, Any], secrets: Mapping[str, Any], project_dir: Path,
                absolute: frozenset[str]) -> BuildSpec:
    path = f"services.{name}.build"
    if "dockerfile_inline" in build:
        raise ConfigError(f"{path}.dockerfile_inline", "is not supported", "put the Dockerfile in a file")
    context, dockerfile = _build_paths(path, build, project_dir, absolute)
    args: dict[str, str] = {}
    for key, value in (build.get("args") or {}).items():
        if looks_secret(key):
            raise ConfigError(f"{path}.args.{key}", "looks like a secret, and build args stay readable in the image",
                              "pass it as a build secret (build.secrets) and read it with RUN --mount=type=secret")
        if value is not None:
            args[key] = str(value)
    return BuildSpec(context=context, dockerfile=dockerfile, args=frozen_mapping(args),
                     target=build.get("target") or None,
                     additional_contexts=frozen_mapping(_additional_contexts(path, build, context, project_dir,
                                                                             absolute)),
                     secrets=_build_secrets(path, build, secrets))


def _build_paths(path: str, build: Mapping[str, Any], project_dir: Path, absolute: frozenset[str]) -> tuple[Path, Path]:
    """The build's context and Dockerfile, resolved: inside the project folder unless the user
    wrote the context as an absolute path (`absolute`: such key paths), a Dockerfile written as
    a relative path then inside the context; the Dockerfile a regular file of its size."""
    context_text = str(build.get("context", "."))
    if "://" in context_text or context_text.startswith("git@"):
        raise ConfigError(f"{path}.context", f"remote build context {context_text!r} is not supported",
                          "check the sources out and point context at the folder")
    if not Path(context_text).is_dir():
        problem = "is not a folder" if os.path.lexists(context_text) else "does not exist"
        raise ConfigError(f"{path}.context", f"build context {context_text} {problem}",
                          "create the folder or fix the path")
    written = context_text if f"{path}.context" in absolute else os.path.relpath(context_text, project_dir)
    context = bounds.within(Path(context_text), project_dir, written, f"{path}.context", "build context")
    name = str(build.get("dockerfile") or "Dockerfile")
    own = context.is_relative_to(project_dir.resolve())  # else a context the user wrote as an absolute path
    dockerfile = bounds.within(context / name, project_dir if own else context, name, f"{path}.dockerfile",
                               "Dockerfile", "the project folder" if own else "its build context")
    if not os.path.lexists(dockerfile):
        raise ConfigError(f"{path}.dockerfile", f"Dockerfile {context / name} does not exist",
                          "create it or set build.dockerfile to its path inside the context")
    bounds.check_file(dockerfile, bounds.DOCKERFILE_BYTES, f"{path}.dockerfile", "Dockerfile")
    return context, dockerfile


def _additional_contexts(path: str, build: Mapping[str, Any], context: Path, project_dir: Path,
                         absolute: frozenset[str]) -> dict[str, str]:
    """Local additional contexts: existing folders, inside the project unless written absolute."""
    extra: dict[str, str] = {}
    for key, value in (build.get("additional_contexts") or {}).items():
        text, where = str(value), f"{path}.additional_contexts.{key}"
        if "://" not in text:
            if not (context / text).is_dir():
                raise ConfigError(where, f"{text} does not exist", "create the folder or fix the path")
            written = text if where in absolute else os.path.relpath(context / text, project_dir)
            text = str(bounds.within(context / text, project_dir, written, where, "build context"))
        extra[key] = text
    return extra


def _build_secrets(path: str, build: Mapping[str, Any], secrets: Mapping[str, Any]) -> tuple[BuildSecret, ...]:
    found = []
    for i, item in enumerate(build.get("secrets") or []):
        source = item.get("source") if isinstance(item, Mapping) else str(item)
        top = secrets.get(source)
        if top is None:
            raise ConfigError(f"{path}.secrets[{i}]", f"secret {source!r} is not defined",
                              "declare it under the top-level secrets: with file: or environment:")
        if top.get("file"):
            spec = f"src={top['file']}"
        elif top.get("environment"):
            spec = f"env={top['environment']}"
        else:
            raise ConfigError(f"secrets.{source}", "a build secret needs file: or environment:",
                              "set one of them")
        found.append(BuildSecret(id=str(item.get("target") or source) if isinstance(item, Mapping) else source,
                                 source=spec))
    return tuple(found)


def _drop_container_name(name: str, definition: dict[str, Any], services: Mapping[str, Any]) -> list[str]:
    """A service that runs in both colors cannot keep one container name: it is dropped (the
    service name still resolves), unless another service refers to that name."""
    container_name = definition.get("container_name")
    if not container_name:
        return []
    if container_name != name:
        for other, svc in services.items():
            if other != name and infer.refers_to(str(container_name), svc):
                raise ConfigError(f"services.{name}.container_name",
                                  f"{other} refers to {container_name!r}, which cannot hold while two colors of "
                                  f"{name} run", f"refer to the service name {name!r} instead")
    definition.pop("container_name")
    return [f"services.{name}.container_name {container_name!r} is left out: two colors of {name} run during "
            f"a release (other services reach it by its service name {name!r})"]


def _check_swapped(name: str, svc: Mapping[str, Any], routed: bool) -> None:
    """Rules for services that run twice during a release (once per color), after
    `_drop_container_name`. The routed service cannot be stateful, so its hints never suggest it."""
    path = f"services.{name}"
    stateful = "" if routed else f", or list {name} under x-immutdock.stateful"
    if str(svc.get("network_mode", "")) == "host":
        raise ConfigError(f"{path}.network_mode", "two colors on the host network would bind the same ports",
                          f"remove network_mode: host{stateful}")
    if svc.get("ports"):
        raise ConfigError(f"{path}.ports", "two colors cannot publish the same host port",
                          "remove ports: the router publishes x-immutdock.router.publish")
    for i, mount in enumerate(svc.get("volumes") or []):
        kind = mount.get("type")
        if kind == "bind" and not mount.get("read_only"):
            raise ConfigError(f"{path}.volumes[{i}]", f"writable bind mount {mount.get('source')}:{mount.get('target')} "
                              "holds data, and two colors of a blue/green service would both write it",
                              "keep the data in a named volume" + ("" if routed else f", or list {name} as stateful")
                              + "; or, if it is code or configuration, mount it :ro (it is then baked into the image)")
        if kind == "volume" and not mount.get("source"):
            raise ConfigError(f"{path}.volumes[{i}]", f"anonymous volume at {mount.get('target')} is lost on every release",
                              "give it a name under the top-level volumes: and mount it by that name")


def active_profiles() -> tuple[str, ...]:
    """The profiles compose activates: COMPOSE_PROFILES (which `--profile` sets)."""
    return tuple(sorted({p.strip() for p in os.environ.get("COMPOSE_PROFILES", "").split(",") if p.strip()}))
