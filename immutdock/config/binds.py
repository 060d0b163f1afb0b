"""What each bind mount of a service is, and what a release does with it.

A bind whose source is a file or folder of the project is release content: it is baked into
the service's release image (see immutdock.apply.bake), so it travels with the image to every
host and node, a rollback brings the old files back and `drift` sees an edit made inside the
container. Except a writable bind that holds data: baking it would lose every write after the
release, so it stays a bind and makes its service stateful. When in doubt a writable bind is
data. Kinds, in the order they are decided:

- `socket`: the Docker socket (the service has root on the host; it runs once, never doubled);
- `leaves`: a source written relative to the project that resolves outside it (`../..`, or a
  symlink out of it): refused;
- `host-file`: a read-only file or folder of the host outside the project (`/etc/localtime:ro`):
  stays a bind, as the host has it;
- `host-data`: a writable folder of the host outside the project (`/srv/minecraft:/data`): stays
  a bind, its service stateful, outside immutdock's volumes (no `volumes backup`);
- `bake`: a project file or folder mounted read-only, or writable holding code or config;
- `data`: a writable project folder that holds data (at a database's data path, named like
  data, empty or missing, marked under `x-immutdock.binds.data`, or on a stateful service).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from immutdock.errors import ConfigError

SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
# Where well-known images keep their data inside the container (infer's DATA_PATHS add to it).
DATA_TARGETS = ("/data", "/var/lib", "/var/opt", "/bitnami", "/var/log", "/srv/data", "/config")
# Names of a folder (or file) that holds data, not code.
DATA_WORDS = frozenset({
    "data", "db", "database", "databases", "dbdata", "pgdata", "db-data", "db_data", "storage", "uploads", "upload",
    "media", "backup", "backups", "logs", "log", "cache", "state", "volumes", "volume", "persist", "persistent",
})
DATA_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db-journal", ".db-wal", ".rdb", ".aof", ".log")
DATA_FILES = frozenset({"acme.json", "dump.rdb", "appendonly.aof"})  # files a service writes its state to
# Files that show a folder holds code or configuration.
CODE_SUFFIXES = frozenset({
    ".py", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".vue", ".php", ".rb", ".go", ".rs", ".java", ".kt",
    ".cs", ".html", ".htm", ".css", ".scss", ".conf", ".cfg", ".ini", ".yml", ".yaml", ".json", ".toml",
    ".xml", ".sh", ".lua", ".tmpl", ".template", ".properties", ".env", ".txt", ".md", ".sql", ".pl",
})
CODE_NAMES = frozenset({"Dockerfile", "Makefile", "Gemfile", "Procfile", "go.mod", "Cargo.toml", "package.json",
                        "requirements.txt", "pyproject.toml", "composer.json", "pom.xml"})
# Folders of installed dependencies: an anonymous volume there keeps the image's copy.
DEPENDENCY_FOLDERS = frozenset({"node_modules", "vendor", ".venv", "venv", "site-packages", "bower_components",
                                "__pycache__", ".next", ".nuxt"})
SCAN = 2000  # entries of a folder looked at for code at most
# Characters a bind's path cannot have to be copied by a Dockerfile COPY as itself.
_NOT_COPYABLE = set('*?[]\\"\'$\n\r\t')


@dataclass(frozen=True)
class Bake:
    """A project file or folder baked into its service's release image, at `target`."""

    source: str  # relative to the project folder, "/"-separated (resolved: no symlink, no "..")
    target: str  # the absolute path in the container
    writable: bool  # written without :ro (what the service writes there stays in its color)
    folder: bool
    masked: tuple[str, ...] = ()  # project paths inside it left out (an anonymous volume keeps the image's)

    def as_json(self) -> dict[str, Any]:
        return {"source": "./" + self.source, "target": self.target, "writable": self.writable, "folder": self.folder}


@dataclass(frozen=True)
class Kind:
    kind: str  # socket | leaves | host-file | host-data | bake | data
    why: str


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _data_named(path: str) -> bool:
    name = os.path.basename(path.rstrip("/")).lower()
    return name in DATA_WORDS or name in DATA_FILES or name.endswith(DATA_SUFFIXES) or name.endswith(("-data", "_data", "data"))


def _rel(path: str, project: str) -> str:
    rel = os.path.relpath(path, project).replace(os.sep, "/")
    return "." if rel == "." else rel


def _overlaps(rel: str, paths: Iterable[str]) -> bool:
    """Whether project path `rel` is one of `paths` or inside one."""
    return any(p == "." or rel == p or rel.startswith(p + "/") for p in paths)


def _look(folder: str) -> tuple[bool, str | None]:
    """One walk of a folder (SCAN entries at most): whether it holds a file that looks like code
    or configuration, and why it looks like it holds data: a file or folder in it named like
    data, or more entries than SCAN to look through (when in doubt it is data); None when not."""
    seen, code = 0, False
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in (".git", "node_modules", "__pycache__")]
        named = next((n for n in files if _data_named(n)), None) or next((d for d in dirs if d.lower() in DATA_WORDS),
                                                                         None)
        if named is not None:
            return code, f"it holds {os.path.relpath(os.path.join(top, named), folder)}, named like data"
        code = code or any(n in CODE_NAMES or os.path.splitext(n)[1].lower() in CODE_SUFFIXES for n in files)
        seen += len(files) + len(dirs)
        if seen > SCAN:
            return code, f"it holds more than {SCAN} files and folders, too many to look through"
    return code, None


def kind(mount: Mapping[str, Any], project_dir: Path, stateful: bool = False,
         marked: Iterable[str] = (), relative: Iterable[str] = (), data_paths: Iterable[str] = ()) -> Kind:
    """What a bind mount (compose's normalized long form) is. `marked`: the project paths that
    hold data (marked by the user, or bound writable as data by a service); `relative`: the
    sources the files wrote relative to the project; `data_paths`: more container paths where
    data lives."""
    source, target = str(mount.get("source") or ""), str(mount.get("target") or "")
    writable = not mount.get("read_only")
    if source in SOCKETS or source.endswith("/docker.sock"):
        return Kind("socket", f"mounts the Docker socket {source}: it has root on the host, so it runs once, "
                              "never doubled")
    project = os.path.realpath(project_dir)
    real = os.path.realpath(source)
    if not _inside(os.path.abspath(source), str(project_dir.absolute())) and not _inside(source, project):
        if source in set(relative):
            return Kind("leaves", f"{source} is outside the project folder")
        if not writable or os.path.isfile(source):  # /etc/localtime, with or without :ro
            return Kind("host-file", f"reads the host's {source}, which is not part of the release")
        return Kind("host-data", f"keeps its data in host folder {source} (at {target}), outside immutdock's "
                                 "named volumes: `volumes backup` does not cover it")
    if os.path.lexists(source) and not _inside(real, project):
        return Kind("leaves", f"{source} is a symlink out of the project folder (to {real})")
    rel = _rel(real if os.path.lexists(source) else source, project if os.path.lexists(source) else str(project_dir))
    shown = "./" + rel if rel != "." else "."
    marks = [os.path.normpath(m.removeprefix("./")).replace(os.sep, "/") for m in marked]
    if not writable:
        if rel != "." and _overlaps(rel, marks):
            return Kind("live", f"reads {shown}, which holds data: it stays a bind (its files are not released)")
        return Kind("bake", f"{shown} is baked into the image at {target}")
    data = f"keeps data in the project's {shown} (at {target}): it stays a bind, never baked into an image"
    at_data_path = any(_inside(target, p) for p in (*DATA_TARGETS, *data_paths))
    if stateful or (rel != "." and _overlaps(rel, marks)) or at_data_path or _data_named(rel) or _data_named(target):
        return Kind("data", data)
    if os.path.isfile(real):
        return Kind("bake", f"{shown} (writable) is a file of code or configuration: baked into the image at {target}")
    code, held = _look(real) if os.path.isdir(real) else (False, None)
    if code and held is None:
        return Kind("bake", f"{shown} (writable) holds code or configuration: baked into the image at {target}")
    why = held or ("it does not exist yet" if not os.path.isdir(real) else "it is empty" if not os.listdir(real)
                   else "it holds no code or configuration")
    return Kind("data", f"{data}; {why} (mount it :ro to bake it into the image)")


def data_sources(services: Mapping[str, Mapping[str, Any]], project_dir: Path, stateful: Iterable[str],
                 marked: Iterable[str], relative: Iterable[str], data_paths: Iterable[str]) -> tuple[str, ...]:
    """The project paths that hold data: those the user marks, and every source a service binds
    writable as data. A read-only bind of one stays a bind, and no bake takes its files."""
    found = [os.path.normpath(m.removeprefix("./")).replace(os.sep, "/") for m in marked]
    on = set(stateful)
    for name, svc in services.items():
        for mount in svc.get("volumes") or []:
            if isinstance(mount, Mapping) and mount.get("type") == "bind" and not mount.get("read_only"):
                if kind(mount, project_dir, name in on, found, relative, data_paths).kind == "data":
                    found.append(_rel(os.path.realpath(str(mount["source"])), os.path.realpath(project_dir)))
    return tuple(dict.fromkeys(found))


def _bake(where: str, mount: Mapping[str, Any], project_dir: Path) -> Bake:
    source = os.path.realpath(str(mount["source"]))
    rel = _rel(source, os.path.realpath(project_dir))
    target = str(mount.get("target") or "")
    odd = sorted(_NOT_COPYABLE & set(rel + target))
    if odd or not target.startswith("/"):
        shown = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}.get(odd[0], odd[0]) if odd else "no /"
        raise ConfigError(where, f"bind {mount.get('source')}:{target} has a path with {shown} in it, which a "
                          "release cannot copy into the image as it is",
                          "rename the file or folder (no * ? [ ] \\ \" ' $)")
    if not os.path.exists(source):
        raise ConfigError(where, f"bind source {mount.get('source')} does not exist, and it is baked into the "
                          "image", "create it, or mark its path under x-immutdock.binds.data if the service "
                          "writes its data there")
    return Bake(source=rel, target=target, writable=not mount.get("read_only"), folder=os.path.isdir(source))


def bakes(name: str, svc: Mapping[str, Any], project_dir: Path, stateful: bool, marked: Iterable[str] = (),
          relative: Iterable[str] = (), data_paths: Iterable[str] = ()
          ) -> tuple[tuple[Bake, ...], list[Any], list[str]]:
    """(the service's project binds baked into its image, its other mounts, warnings). A bind
    that leaves the project, or whose path a COPY cannot take, is refused. The bakes are in the
    order Docker mounts binds: the shallowest target first."""
    baked: list[tuple[Mapping[str, Any], Bake]] = []
    kept: list[Any] = []
    warnings: list[str] = []
    for i, mount in enumerate(svc.get("volumes") or []):
        if not isinstance(mount, Mapping) or mount.get("type") != "bind":
            kept.append(mount)
            continue
        where = f"services.{name}.volumes[{i}]"
        found = kind(mount, project_dir, stateful, marked, relative, data_paths)
        if found.kind == "leaves":
            raise ConfigError(where, f"bind {mount.get('source')}:{mount.get('target')}: {found.why}, so it "
                              "cannot be part of the release", "move the files into the project folder")
        if found.kind != "bake":
            if found.kind in ("socket", "host-data"):
                warnings.append(f"services.{name} {found.why}" if found.kind == "socket" else
                                f"services.{name} {found.why} (on an SSH host, that host's folder)")
            kept.append(mount)
            continue
        baked.append((mount, _bake(where, mount, project_dir)))
    covering = [str(m.get("target") or "") for m in kept if isinstance(m, Mapping) and not _dependencies(m)]
    for mount, bake in list(baked):
        cover = next((t for t in covering if t != bake.target and _inside(bake.target, t)), None)
        if cover is not None:  # a volume mounted over it would hide the image's copy
            baked.remove((mount, bake))
            kept.append(mount)
            warnings.append(f"services.{name}: ./{bake.source}:{bake.target} stays a bind: the mount at {cover} "
                            "covers it, and would hide a copy in the image")
    found_bakes = sorted((b for _m, b in baked), key=lambda b: b.target.rstrip("/").count("/"))
    for b in found_bakes:
        if b.writable:
            warnings.append(f"services.{name}: ./{b.source}:{b.target} is writable: it is baked into {name}'s image, "
                            "so what the service writes there is no longer written back to the project (the "
                            "container's copy goes with its color); mark it :ro, or under x-immutdock.binds.data "
                            "if it holds data")
    kept, found_bakes = _without_masks(name, found_bakes, kept, warnings)
    return tuple(found_bakes), kept, warnings


def _dependencies(mount: Mapping[str, Any]) -> bool:
    """An anonymous volume at a folder of installed dependencies (node_modules, vendor, ...)."""
    return mount.get("type") == "volume" and not mount.get("source") \
        and os.path.basename(str(mount.get("target") or "").rstrip("/")) in DEPENDENCY_FOLDERS


def _without_masks(name: str, baked: list[Bake], kept: list[Any], warnings: list[str]
                   ) -> tuple[list[Any], list[Bake]]:
    """An anonymous volume inside a baked folder (`.:/code` with `/code/node_modules`), or at a
    folder of installed dependencies, keeps the image's own files there: it starts as a copy of
    them and is thrown away with its container. Left out, the container has the image's files
    there all the same (and `drift` sees them); the project's own copy there is left out of the
    bake (its `masked` paths). One under a bind that stays a bind is kept: it still hides the
    host's files."""
    out = []
    for mount in kept:
        target = str(mount.get("target") or "") if isinstance(mount, Mapping) else ""
        anonymous = isinstance(mount, Mapping) and mount.get("type") == "volume" and not mount.get("source")
        over = next((b for b in baked if b.folder and _inside(target, b.target) and target != b.target), None)
        under_bind = any(isinstance(m, Mapping) and m.get("type") == "bind" and _inside(target, str(m.get("target")))
                         for m in kept)
        if anonymous and over is not None:
            inner = os.path.normpath(os.path.join(over.source, os.path.relpath(target, over.target)))
            baked[baked.index(over)] = over = dataclasses.replace(over, masked=(*over.masked, inner))
            warnings.append(f"services.{name}: the anonymous volume at {target} is left out: ./{over.source} is "
                            f"baked into the image at {over.target} without its {inner}, so what the image has at "
                            f"{target} stays")
            continue
        if isinstance(mount, Mapping) and _dependencies(mount) and not under_bind:
            warnings.append(f"services.{name}: the anonymous volume at {target} is left out: it only keeps the "
                            "image's own installed files there, which the container has without it")
            continue
        out.append(mount)
    return out, baked
