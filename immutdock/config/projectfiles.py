"""The files a compose file names, checked for where they are and what they are before anything
reads them (see `immutdock.config.bounds` for the limits).

Before compose reads the files: `.env`, each service's `env_file` (a regular file of at most
bounds.ENV_BYTES, inside the project folder unless written as an absolute path) and the files
they include or extend (compose files within the same limits, whose own references are checked
in turn). After: what a release reads later, the secrets' files and each build's
`.dockerignore`. The build contexts and Dockerfiles are checked by `config.validate`, which
`written_absolute` tells which of them the user wrote as absolute paths (compose makes every
context absolute)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from immutdock.config import bounds

if TYPE_CHECKING:
    from immutdock.config.model import App

_VARIABLE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}"
                       r"|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Pure: `text` with compose's variables replaced ($VAR, ${VAR}, ${VAR:-default},
    ${VAR-default}, ${VAR:+other}, ${VAR:?error}; $$ is a $), as far as a path needs it."""
    def value(found: re.Match[str]) -> str:
        if found.group(0) == "$$":
            return "$"
        name, operator, argument = found.group(1) or found.group(4), found.group(2), found.group(3) or ""
        known = variables.get(name)
        empty = known is None or (known == "" and (operator or ":").startswith(":"))
        if operator and operator.endswith("-"):
            return interpolate(argument, variables) if empty else str(known)
        if operator and operator.endswith("+"):
            return "" if empty else interpolate(argument, variables)
        return known or ""  # ${VAR:?error}: compose refuses a missing one itself

    return _VARIABLE.sub(value, text)


def _services(raw: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    services = raw.get("services")
    for name, svc in (services.items() if isinstance(services, Mapping) else ()):
        if isinstance(svc, Mapping):
            yield str(name), svc


def _paths(where: str, value: Any) -> Iterator[tuple[str, str]]:
    """(key path, path as written) of a setting that holds one path or a list of them (an item
    may be a mapping with its path under `path`, as env_file's {path, required})."""
    items = [(f"{where}[{i}]", item) for i, item in enumerate(value)] if isinstance(value, list) else [(where, value)]
    for at, item in items:
        text = item.get("path") if isinstance(item, Mapping) else item
        if isinstance(text, str):
            yield at, text


def _includes(raw: Mapping[str, Any]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """The entries of `include:`, each as a mapping ({path: FILE} for one written as a string)."""
    include = raw.get("include")
    for i, item in enumerate(include if isinstance(include, list) else []):
        yield i, item if isinstance(item, Mapping) else {"path": item}


def _env_files(raw: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(key path, path as written) of every env_file of a raw compose file."""
    for name, svc in _services(raw):
        yield from _paths(f"services.{name}.env_file", svc.get("env_file"))
    for i, item in _includes(raw):
        yield from _paths(f"include[{i}].env_file", item.get("env_file"))


def _compose_files(raw: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(key path, path as written) of the compose files a raw file includes or extends."""
    for i, item in _includes(raw):
        yield from _paths(f"include[{i}].path", item.get("path"))
    for name, svc in _services(raw):
        extends = svc.get("extends")
        if isinstance(extends, Mapping) and isinstance(extends.get("file"), str):
            yield f"services.{name}.extends.file", extends["file"]


def before_compose(files: list[Path], raws: list[Mapping[str, Any]], variables: Mapping[str, str]) -> None:
    """What compose reads besides the files it is given (and `.env`, which config.read_dotenv
    reads within bounds.ENV_BYTES first), checked before it runs: every env_file, and the
    compose files included or extended (read within the limits, their own references checked
    too). A path that does not exist is left to compose to name."""
    project = files[0].parent
    seen = {f.resolve() for f in files}
    todo = list(zip(files, raws))
    while todo:
        path, raw = todo.pop()
        for where, written in _env_files(raw):
            text = interpolate(written, variables)
            env_file = bounds.within(path.parent / text, project, text, where, "env file")
            if os.path.lexists(env_file):
                bounds.check_file(env_file, bounds.ENV_BYTES, where, "env file")
        for where, written in _compose_files(raw):
            other = (path.parent / interpolate(written, variables)).resolve()
            if "://" not in written and other not in seen and os.path.lexists(other):  # else compose's to say
                seen.add(other)
                todo.append((other, bounds.read_compose(other)[1]))


def written_absolute(raws: list[Mapping[str, Any]], variables: Mapping[str, str]) -> frozenset[str]:
    """Pure: the key paths of the build contexts and additional contexts the files give as
    absolute paths (the last file that sets one decides, as compose merges them)."""
    found: set[str] = set()
    for raw in raws:
        for name, svc in _services(raw):
            for key, text in _contexts(svc.get("build")):
                absolute = isinstance(text, str) and os.path.isabs(interpolate(text, variables))
                (found.add if absolute else found.discard)(f"services.{name}.build.{key}")
    return frozenset(found)


def relative_binds(raws: list[Mapping[str, Any]], variables: Mapping[str, str], folder: Path) -> frozenset[str]:
    """Pure: the bind sources the files write as relative paths (./x, ../x), made absolute
    against `folder` as compose makes them (short `SRC:DST[:MODE]` and long {type: bind})."""
    found: set[str] = set()
    for raw in raws:
        for _name, svc in _services(raw):
            for item in svc.get("volumes") or [] if isinstance(svc.get("volumes"), list) else []:
                text = item.get("source") if isinstance(item, Mapping) and item.get("type") == "bind" else \
                    item.split(":", 1)[0] if isinstance(item, str) and ":" in item else None
                text = interpolate(text, variables) if isinstance(text, str) else ""
                if text.startswith("."):
                    found.add(os.path.normpath(os.path.join(folder, text)))
    return frozenset(found)


def env_files(raws: list[Mapping[str, Any]], variables: Mapping[str, str], folder: Path) -> tuple[str, ...]:
    """Pure: every env_file the files name, absolute (compose resolves them into `environment`
    and leaves them out of its model): files of settings that a bake never takes."""
    return tuple(dict.fromkeys(os.path.normpath(os.path.join(folder, interpolate(text, variables)))
                               for raw in raws for _where, text in _env_files(raw)))


def _contexts(build: Any) -> list[tuple[str, Any]]:
    """(key under build, value as written) of a raw build's context and additional contexts
    (a mapping, or a list of NAME=PATH)."""
    build = {"context": build} if isinstance(build, str) else build
    if not isinstance(build, Mapping):
        return []
    extra = build.get("additional_contexts")
    pairs = list(extra.items()) if isinstance(extra, Mapping) else \
        [tuple(str(e).split("=", 1)) for e in extra if "=" in str(e)] if isinstance(extra, list) else []
    return ([("context", build["context"])] if "context" in build else []) + \
        [(f"additional_contexts.{k}", v) for k, v in pairs]


def after_compose(app: App) -> None:
    """The files a release reads later, checked now: each secret's file a service or a build
    uses (a regular file of at most bounds.SECRET_BYTES), each build's .dockerignore and the
    router's certificate and key (see tls.check)."""
    used: set[str] = set()
    for svc in app.services.values():
        build = svc.definition.get("build")
        for refs in (svc.definition.get("secrets"), build.get("secrets") if isinstance(build, Mapping) else None):
            used |= {str(r.get("source") if isinstance(r, Mapping) else r) for r in refs or []}
        if svc.build is not None:
            beside = svc.build.dockerfile.with_name(f"{svc.build.dockerfile.name}.dockerignore")
            for ignore in (beside, svc.build.context / ".dockerignore"):
                if ignore.is_file():
                    bounds.check_file(ignore, bounds.DOCKERFILE_BYTES, f"services.{svc.name}.build.context",
                                      ".dockerignore")
    for key in sorted(used):
        file = (app.secrets.get(key) or {}).get("file")
        if file:
            bounds.check_file(Path(str(file)), bounds.SECRET_BYTES, f"secrets.{key}.file", "secret file")
    router = app.settings.router
    if router is not None and router.tls is not None:
        from immutdock.config import tls

        tls.check(router.tls, app.project_dir)


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments, `export` and quotes as compose reads them)."""
    out: dict[str, str] = {}
    if not os.path.lexists(path):
        return out
    try:  # a regular file within bounds.ENV_BYTES, or a ConfigError: compose reads it next
        text = bounds.read_file(path, bounds.ENV_BYTES, path.name, "env file").decode("utf-8")
    except UnicodeDecodeError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        value = value.strip()
        if value[:1] in ("'", '"') and value.endswith(value[0]) and len(value) > 1:
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key.strip()] = value
    return out
