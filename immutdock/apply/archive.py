"""Archived releases: `prune --archive DIR` writes each release whose images it removes as a
gzip-compressed `docker save` of them (`APP-rN.tar.gz`), with a manifest (`APP-rN.json`: the
archive's SHA-256, each image's ID, and the release's record with its color model), before
anything is removed. `rollback --to rN --archive DIR` loads the archive back when rN's images
are gone: its checksum is checked first, the loaded image IDs after, and a record whose model
was compacted away gets it back from the manifest. Records keep no value in clear (see
redact.py), so neither does the manifest."""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

from immutdock.apply.prune import owned
from immutdock.errors import ConfigError, EngineError, ImmutdockError
from immutdock.gateways.engine import Engine
from immutdock.gateways.files import Bar, Hashed, chunks, file_digest, write_new
from immutdock.targets import ledger

FORMAT = 1


@dataclass(frozen=True)
class ArchiveManifest:
    """What an archive of a release holds, beside it."""

    app: str
    release: str
    archive: str  # file name, beside the manifest
    sha256: str
    size: int
    image_ids: Mapping[str, str]  # reference -> image ID
    record: Mapping[str, str] = field(default_factory=dict)  # the record's labels (ledger.to_labels)
    created: str = ""
    format: int = FORMAT

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        data.update(image_ids=dict(self.image_ids), record=dict(self.record))
        return data


def paths(folder: Path, app: str, release: str) -> tuple[Path, Path]:
    return folder / f"{app}-{release}.tar.gz", folder / f"{app}-{release}.json"


def own_images(engine: Engine, app: str, record: ledger.Record) -> list[str]:
    """The release's images that prune would remove (see prune.owned)."""
    return sorted(ref for ref in set(record.images.values()) if owned(engine, app, ref))


def read(path: Path) -> ArchiveManifest:
    try:
        data = json.loads(path.read_text())
        made = ArchiveManifest(**data)
    except FileNotFoundError:
        raise ConfigError("--archive", f"no archive manifest {path}",
                          "name the folder `prune --archive` wrote it into") from None
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError("--archive", f"{path} is not a release archive's manifest ({exc})",
                          "name the folder `prune --archive` wrote it into") from None
    if made.format != FORMAT or "/" in made.archive:
        raise ConfigError("--archive", f"{path} is not a release archive's manifest of this immutdock",
                          "name the folder `prune --archive` wrote it into")
    return made


def write(engine: Engine, app: str, record: ledger.Record, refs: list[str], folder: Path, bar: Bar) -> ArchiveManifest:
    """Archive `refs` (the release's images) and the record into `folder`. An archive of the
    same images already there is kept. Nothing is left under the final names unless whole."""
    archive, manifest = paths(folder, app, record.id)
    found_images = {ref: engine.inspect_image(ref) or {} for ref in refs}
    ids = {ref: str(found.get("Id")) for ref, found in found_images.items()}
    if manifest.exists() and archive.exists():
        found = read(manifest)
        if found.app == app and all(found.image_ids.get(ref) == image_id for ref, image_id in ids.items()):
            return found  # it holds these images already (and maybe more, pruned since)
        raise ConfigError("--archive", f"{manifest} is an archive of {found.app}'s {found.release} with other images",
                          "move it away or name another folder; nothing was pruned")
    partial, partial_manifest = (p.with_name(p.name + ".partial") for p in (archive, manifest))
    what = f"archiving {record.id}"
    total = sum(int(found.get("Size") or 0) for found in found_images.values())
    try:
        with partial.open("xb") as out:
            hashed = Hashed(out)
            with gzip.GzipFile(filename="", mode="wb", fileobj=hashed, compresslevel=6, mtime=0) as packed:
                counted = _Counted(packed, bar, what, total)
                engine.save_images(refs, counted)
                bar(what, counted.done, counted.done)  # the layers images share are saved once
            out.flush()
            os.fsync(out.fileno())
        made = ArchiveManifest(app=app, release=record.id, archive=archive.name, sha256=hashed.digest.hexdigest(),
                               size=hashed.size, image_ids=ids, record=ledger.to_labels(app, record),
                               created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        write_new(partial_manifest, json.dumps(made.as_json(), indent=1) + "\n")
        os.replace(partial, archive)
        os.replace(partial_manifest, manifest)
        return made
    except OSError as exc:
        raise ImmutdockError(f"cannot write the archive of {record.id} into {folder}: {exc.strerror or exc}",
                             "free some space there or name another folder; nothing was pruned") from None
    finally:
        partial.unlink(missing_ok=True)
        partial_manifest.unlink(missing_ok=True)


class _Counted:
    def __init__(self, out: gzip.GzipFile, bar: Bar, what: str, total: int) -> None:
        self.out, self.bar, self.what, self.total, self.done = out, bar, what, total, 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.done += len(data)
        self.bar(self.what, self.done, max(self.total, self.done))
        return len(data)


def restore(engine: Engine, app: str, record: ledger.Record, folder: Path, records: list[ledger.Record],
            bar: Bar, say: Callable[[str], None]) -> ledger.Record:
    """Load the release's archive back; the record as it must be for a rollback (its model put
    back from the manifest when a prune compacted it away)."""
    manifest_path = paths(folder, app, record.id)[1]
    manifest = read(manifest_path)
    archive = manifest_path.with_name(manifest.archive)
    if manifest.app != app or manifest.release != record.id:
        raise ConfigError("--archive", f"{manifest_path.name} is {manifest.app}'s {manifest.release}, not "
                                       f"{app}'s {record.id}", "name the folder of this app's archives")
    if not archive.is_file():
        raise ConfigError("--archive", f"the archive {archive} is missing", "copy it back beside its .json")
    found = file_digest(archive, bar, f"checking {archive.name}")
    if found != manifest.sha256:
        raise ConfigError("--archive", f"{archive.name} is corrupt: its SHA-256 is {found[:12]}, the manifest says "
                                       f"{manifest.sha256[:12]}", "nothing was changed; restore the file from a copy")
    say(f"loading {', '.join(manifest.image_ids)} from {archive.name}")
    engine.load_images(chunks(archive, bar, f"loading {record.id}"))
    for ref, image_id in manifest.image_ids.items():
        if engine.image_id(ref) != image_id:
            raise EngineError(f"{ref} loaded from {archive.name} is not the image archived ({image_id[:19]})",
                              "the archive does not hold what its manifest says; restore it from a copy")
    if record.packed:
        return record
    kept = ledger.from_labels(manifest.record)
    if not kept.packed:
        raise ConfigError("--archive", f"the archive of {record.id} holds no model to roll back to",
                          "release that version again instead")
    say(f"putting {record.id}'s record back from {manifest_path.name}")
    taken = frozenset(r.volume for r in records)
    return ledger.rewrite(engine, app, record, replace(record, packed=kept.packed, salt=kept.salt), taken)
