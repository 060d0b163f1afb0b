"""A volume backup's files (pure): its manifest, the names and folders of backups, which
volumes and containers a backup is about, and the checks a restore makes."""

from __future__ import annotations

import datetime as _dt
import json
import re
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from immutdock import labels as L
from immutdock.config.model import App
from immutdock.errors import ConfigError, ImmutdockError
from immutdock.gateways.engine import ContainerState




HELPER_REPOSITORY = "immutdock-volumes"
MOUNT = "/v"
HELPER = "/usr/local/bin/volume-helper"
ARCHIVE, DUMP, MANIFEST = ".tar.gz", ".dump.gz", ".json"
FILES, DUMPED = "files", "dump"  # a backup's kind: a copy of the files, or a dump command's output
FORMAT = 1


class BackupBroken(ImmutdockError):
    """A backup that does not hold what its manifest says (exit 1)."""


@dataclass(frozen=True)
class Manifest:
    app: str
    volume: str  # the compose file's key
    engine_volume: str  # its name on the engine
    release: str | None  # the live release when it was taken
    created: str  # UTC, ISO 8601
    archive: str  # the .tar.gz's file name, beside the manifest
    sha256: str  # of the archive
    size: int  # of the archive
    tar_bytes: int  # the tar (or the dump) before compression
    files: Mapping[str, str] = field(default_factory=dict)  # path in the volume -> SHA-256
    stopped: tuple[str, ...] = ()  # services stopped for the copy
    format: int = FORMAT
    kind: str = FILES
    service: str | None = None  # a dump's: the service that ran the dump command
    dump_sha256: str | None = None  # a dump's, before compression

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        data["files"] = dict(self.files)
        data["stopped"] = list(self.stopped)
        return data

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        try:
            data = json.loads(path.read_text())
            made = cls(**{**data, "stopped": tuple(data.get("stopped") or ())})
        except FileNotFoundError:
            raise ConfigError(str(path), "no such backup manifest",
                              "name a backup's .tar.gz or .json (see `immutdock volumes ls --to DIR`)") from None
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(str(path), f"not a backup manifest ({exc})", "name the .json written with the backup") \
                from None
        if made.format != FORMAT or not made.archive or "/" in made.archive or made.kind not in (FILES, DUMPED):
            raise ConfigError(str(path), "not a backup manifest of this immutdock", "name the .json written with it")
        return made


# -- finding things (pure) --------------------------------------------------------------------
def pick_volumes(app: App, names: Sequence[str]) -> list[tuple[str, str]]:
    """(compose key, engine name) of the named volumes asked for (all of the app's by default)."""
    known = {key: app.volume_name(key) for key in app.volumes}
    if not known:
        raise ConfigError("volumes", f"app {app.name} has no named volumes", "declare one under the file's volumes:")
    by_engine = {engine_name: key for key, engine_name in known.items()}
    picked: list[tuple[str, str]] = []
    for name in names or list(known):
        key = name if name in known else by_engine.get(name)
        if key is None:
            raise ConfigError(name, f"not a volume of app {app.name}", f"its volumes: {', '.join(sorted(known))}")
        picked.append((key, known[key]))
    return picked


def users(containers: Sequence[ContainerState], engine_volume: str) -> list[ContainerState]:
    return [c for c in containers if engine_volume in c.volumes]


def to_stop(app: App, containers: Sequence[ContainerState], engine_volume: str) -> list[ContainerState]:
    """The running containers of stateful services that mount the volume: stopped for a copy."""
    stateful = {s.name for s in app.stateful}
    return [c for c in users(containers, engine_volume)
            if c.status == "running" and c.service in stateful and c.labels.get(L.ROLE) == "state"]


def mounting(app: App, engine_volume: str) -> list[str]:
    """The stateful services of the file that mount the volume."""
    return [s.name for s in app.stateful
            if any(isinstance(m, Mapping) and m.get("type") == "volume" and m.get("source") in app.volumes
                   and app.volume_name(str(m["source"])) == engine_volume for m in s.definition.get("volumes") or [])]


def service_state(containers: Sequence[ContainerState], service: str, engine_volume: str) -> list[ContainerState]:
    """The containers of stateful `service` (its state project's) that mount the volume."""
    return [c for c in users(containers, engine_volume) if c.service == service and c.labels.get(L.ROLE) == "state"]


def parse_sums(text: str) -> dict[str, str]:
    """`volume-helper sums` output ("SHA256  ./PATH" per line) as path -> SHA-256."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        digest, sep, path = line.partition("  ")
        if sep and len(digest) == 64:
            found[_clean(path)] = digest
    return found


def differences(expected: Mapping[str, str], found: Mapping[str, str]) -> list[str]:
    """What a restored volume lacks, holds more of, or holds differently than the manifest."""
    lines = [f"missing {p}" for p in sorted(set(expected) - set(found))]
    lines += [f"changed {p}" for p in sorted(p for p in set(expected) & set(found) if expected[p] != found[p])]
    lines += [f"extra {p}" for p in sorted(set(found) - set(expected))]
    return lines


def archive_root(archive: Path) -> tarfile.TarInfo | None:
    """The backup's entry for the volume's top folder ("."), when it has one."""
    try:
        with tarfile.open(archive, "r|gz") as tar:
            first = tar.next()
    except (OSError, tarfile.TarError, EOFError):
        return None
    return first if first is not None and first.isdir() and _clean(first.name) in ("", ".") else None


def file_stem(app: str, volume: str, when: _dt.datetime) -> str:
    return f"{app}-{volume}-{when.strftime('%Y%m%dT%H%M%S')}Z"


def kept(folder: Path, app: str, volume: str) -> list[Path]:
    """The manifests of the volume's backups in `folder`, oldest first."""
    named = re.compile(re.escape(f"{app}-{volume}-") + r"(\d{8}T\d{6}Z)(?:-(\d+))?" + re.escape(MANIFEST))
    found = [(m.group(1), int(m.group(2) or 1), p) for p in (folder.glob(f"{app}-{volume}-*{MANIFEST}")
                                                            if folder.is_dir() else [])
             if (m := named.fullmatch(p.name))]
    return [p for _when, _n, p in sorted(found)]


def manifest_of(path: Path) -> Path:
    """The manifest beside a backup named by its .tar.gz, .dump.gz or .json."""
    for suffix in (ARCHIVE, DUMP):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)] + MANIFEST)
    return path


def archive_of(manifest: Path) -> Path:
    """The archive beside a manifest (its .tar.gz, or the .dump.gz of a dump)."""
    stem = manifest.with_name(manifest.name[: -len(MANIFEST)])
    dump = stem.with_name(stem.name + DUMP)
    return dump if dump.exists() else stem.with_name(stem.name + ARCHIVE)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "(it printed no error)"


def _clean(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path


def helper_labels(app: str) -> dict[str, str]:
    return {L.APP: app, L.ROLE: "volume-helper"}
