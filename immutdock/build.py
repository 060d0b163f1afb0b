"""Content-addressed builds: observe the inputs, plan (hash -> tag, cached or not), apply."""

from __future__ import annotations

import datetime as _dt
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from immutdock import labels as L
from immutdock.buildhash import BuildInputs, build_digest, tag_for
from immutdock.compose import Compose
from immutdock.contexthash import hash_context
from immutdock.dockerfile import base_images
from immutdock.engine import Engine
from immutdock.errors import ConfigError
from immutdock.model import BuildSpec

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImagePlan:
    """One image to have on the engine: built now, or already there (cached)."""

    service: str
    repository: str
    tag: str
    content_hash: str
    cached: bool
    image_id: str | None
    spec: BuildSpec
    missing_base: str | None = None  # a base image the engine lacks (planned without pulling it)

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag}"

    def as_json(self) -> dict[str, object]:
        return {"service": self.service, "image": self.image, "content_hash": self.content_hash,
                "cached": self.cached, "image_id": self.image_id, "missing_base": self.missing_base}


class MissingBase(Exception):
    """A FROM image is not on the engine, and this reading must not pull it."""


def build_inputs(spec: BuildSpec, engine: Engine, pull: bool = True) -> BuildInputs:
    """Everything the image is made from, with every FROM image resolved to its ID (pulled
    when missing, with `pull`; else MissingBase)."""
    text = spec.dockerfile.read_bytes()
    stage_args = dict(spec.args)
    bases = base_images(text.decode("utf-8", "replace"), stage_args)
    named = set(spec.additional_contexts)
    base_ids: dict[str, str] = {}
    for ref in bases:
        if ref not in named:
            found = engine.resolve_image(ref, pull=pull)
            if found is None:
                raise MissingBase(ref)
            base_ids[ref] = found
    extra: dict[str, str] = {}
    for name, source in spec.additional_contexts.items():
        if "://" in source:
            extra[name] = source
        else:
            path = Path(source)
            extra[name] = hash_context(path, path / "Dockerfile").digest
    return BuildInputs(context=hash_context(spec.context, spec.dockerfile), dockerfile_text=text,
                       args=dict(spec.args), target=spec.target, additional_contexts=extra,
                       base_image_ids=base_ids, secrets_ids=tuple(sorted(s.id for s in spec.secrets)))


def plan_image(service: str, repository: str, spec: BuildSpec, engine: Engine, pull: bool = True) -> ImagePlan:
    """The image's tag from its content. Without `pull`, a base image the engine lacks leaves
    the tag unknown ("pending"): the image is then planned as a build."""
    try:
        digest = build_digest(build_inputs(spec, engine, pull))
    except MissingBase as missing:
        return ImagePlan(service=service, repository=repository, tag="pending", content_hash="", cached=False,
                         image_id=None, spec=spec, missing_base=str(missing))
    except OSError as exc:
        raise ConfigError(f"services.{service}.build", f"cannot read the build context: {exc}",
                          "check the files' permissions") from None
    except ValueError as exc:  # an invalid .dockerignore pattern
        raise ConfigError(f"services.{service}.build.context", f".dockerignore: {exc}",
                          "fix the pattern (Docker's own syntax)") from None
    tag = tag_for(digest)
    found = engine.inspect_image(f"{repository}:{tag}")  # one request: ID and labels
    image_id = found["Id"] if found else None
    cached = found is not None and ((found.get("Config") or {}).get("Labels") or {}).get(L.CONTENT_HASH) == digest
    return ImagePlan(service=service, repository=repository, tag=tag, content_hash=digest,
                     cached=cached, image_id=image_id if cached else None, spec=spec)


def plan_images(app_name: str, specs: Mapping[str, BuildSpec], engine: Engine, pull: bool = True) -> list[ImagePlan]:
    """Hash every build (in parallel: hashing is I/O and hashlib releases the GIL)."""
    items = list(specs.items())
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(plan_image, svc, f"{app_name}-{svc}", spec, engine, pull) for svc, spec in items]
        return [f.result() for f in futures]


def _git(project_dir: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(project_dir), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def git_revision(project_dir: Path) -> str | None:
    return _git(project_dir, "rev-parse", "HEAD")


def oci_labels(app_name: str, item: ImagePlan, project_dir: Path) -> dict[str, str]:
    found = {
        L.APP: app_name, L.ROLE: "image", L.SERVICE: item.service, L.CONTENT_HASH: item.content_hash,
        L.OCI_CREATED: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        L.OCI_VERSION: item.tag,
        L.OCI_SOURCE: _git(project_dir, "remote", "get-url", "origin") or str(project_dir),
    }
    revision = git_revision(project_dir)
    if revision:
        found[L.OCI_REVISION] = revision
    return found


def apply_images(app_name: str, plans: Iterable[ImagePlan], project_dir: Path, engine: Engine,
                 compose: Compose, progress: Progress = lambda _l: None) -> list[ImagePlan]:
    """Build what is not cached; an identical build of another service is tagged, not rebuilt."""
    done: list[ImagePlan] = []
    built_by_hash: dict[str, str] = {}
    for item in plans:
        if item.cached:
            progress(f"{item.service}: {item.image} cached")
            done.append(item)
            continue
        twin = built_by_hash.get(item.content_hash)
        if twin is None:
            progress(f"{item.service}: building {item.image}")
            spec = item.spec
            for line in compose.build(spec.context, dockerfile=spec.dockerfile, tag=item.image,
                                      labels=oci_labels(app_name, item, project_dir), args=spec.args,
                                      target=spec.target,
                                      secrets=[f"id={s.id},{s.source}" for s in spec.secrets],
                                      build_contexts=spec.additional_contexts):
                progress(f"{item.service}: {line}")
        else:
            progress(f"{item.service}: same content as {twin}, tagging {item.image}")
            engine.tag(twin, item.repository, item.tag)
        image_id = engine.image_id(item.image)
        built_by_hash[item.content_hash] = item.image
        done.append(ImagePlan(service=item.service, repository=item.repository, tag=item.tag,
                              content_hash=item.content_hash, cached=False, image_id=image_id, spec=item.spec))
    return done
