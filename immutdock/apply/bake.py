"""A service's project binds baked into its release image.

The release image of a service that binds project files is built FROM the service's own image
(built here, or pulled and pinned by its ID), with one COPY per bind of the files at the
mount's path: the project folder is the build context, so the project's `.dockerignore` rules
apply, and a COPY keeps each file's mode (owned by root, whoever owns it here). Its tag is the
hash of the base image's identity, of every bind's files and modes (each bind hashed on its
own, so `verify` can name the one that changed) and of the generated Dockerfile, like every
other image. It travels to hosts and nodes with the image; a rollback runs the old one."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping

from immutdock import labels as L
from immutdock.config import bounds
from immutdock.config.binds import Bake
from immutdock.config.model import App, Service
from immutdock.errors import ConfigError
from immutdock.gateways.compose import Compose
from immutdock.gateways.engine import Engine
from immutdock.identity.buildhash import tag_for
from immutdock.identity.contexthash import ContextReadError, hash_paths
from immutdock.identity.dockerignore import IgnoreMatcher, parse_ignore_file
from immutdock.plan.imageplan import BakePlan, Baking, ImagePlan

BAKE_VERSION = 1
# {"base": identity, "base_image": ref, "binds": {target: digest}}: what verify compares, what prune takes along
BAKE_LABEL = f"{L.PREFIX}.bake"


# Never baked, whatever .dockerignore says: git's history, and compose's .env (variables, often
# secrets); the app's secret files, env_files and TLS files are added by baking_of.
PRIVATE = (".git", "**/.git", ".env", "**/.env", ".env.*", "**/.env.*")


def baking_of(app: App) -> Baking:
    """What every bake of `app` reads: its project folder, the .dockerignore rules its bakes use
    and its limit. The rules are the project's, then the project paths a bake never takes: the
    folders of data other binds keep (and those an anonymous volume covers), and files of
    secrets or settings (git's, .env, the secrets' files, env_files, the router's TLS files)."""
    path = app.project_dir / ".dockerignore"
    own = parse_ignore_file(bounds.read_file(path, bounds.DOCKERFILE_BYTES, "services", ".dockerignore")) \
        if path.is_file() else []
    root = os.path.realpath(app.project_dir)

    def inside(files: list[str]) -> list[str]:
        reals = [os.path.realpath(f) for f in files]
        return [os.path.relpath(r, root).replace(os.sep, "/") for r in reals if r.startswith(root + os.sep)]

    files = [str(spec.get("file")) for spec in app.secrets.values() if spec.get("file")] + list(app.env_files)
    tls = app.settings.router.tls if app.settings.router is not None else None
    files += [str(app.project_dir / p) for p in ((tls.cert, tls.key) if tls is not None else ()) if p]
    private = [*PRIVATE, *inside(files)]
    kept = [str(m.get("source")) for svc in app.services.values() for m in svc.definition.get("volumes") or []
            if isinstance(m, Mapping) and m.get("type") == "bind" and m.get("source")]
    data = [*inside(kept), *(p.removeprefix("./") for p in app.settings.bind_data),
            *(m for svc in app.services.values() for b in svc.bakes for m in b.masked)]
    data = [d for d in data if d.strip("./")]  # never the whole project
    return Baking(app.project_dir, tuple(dict.fromkeys([*own, *data, *private])), tuple(dict.fromkeys(private)),
                  app.settings.bind_limit)


def dockerfile(base_ref: str, bakes: tuple[Bake, ...]) -> str:
    """FROM the service's own image, one COPY per bind (exec form: no shell, no word splitting)."""
    lines = [f"FROM {base_ref}"]
    for b in bakes:
        source = "." if b.source == "." else b.source + ("/" if b.folder else "")
        target = b.target.rstrip("/") + "/" if b.folder else b.target
        lines.append(f"COPY {json.dumps([source, target])}")
    return "\n".join(lines) + "\n"


def hash_binds(svc: Service, baking: Baking) -> dict[str, tuple[str, int, int]]:
    """Each bind's (digest, files, bytes), by its mount path; refused (exit 2) when a bind is a
    file that is never baked, is left out by .dockerignore, cannot be read, or the binds
    together are over the limit."""
    patterns = list(baking.patterns)
    matcher, private = IgnoreMatcher(patterns), IgnoreMatcher(list(baking.private))
    project_dir, limit = baking.project_dir, baking.limit
    found: dict[str, tuple[str, int, int]] = {}
    for b in svc.bakes:
        where = f"services.{svc.name}.volumes (./{b.source}:{b.target})"
        if b.source != "." and private.ignored(b.source):
            raise ConfigError(where, f"./{b.source} is a file of secrets or settings (.env, a secret's file, an "
                              "env_file, or git's), which a release never bakes into an image",
                              "pass it as a compose secret (secrets: {NAME: {file: ...}}, read at /run/secrets/NAME)")
        if b.source != "." and matcher.ignored(b.source):
            raise ConfigError(where, f"./{b.source} is left out by the project's .dockerignore, so it cannot be "
                              "baked into the image", f"add !{b.source} to .dockerignore")
        try:
            digest = hash_paths(project_dir, [b.source], patterns)
        except (ContextReadError, OSError) as exc:
            raise ConfigError(where, f"cannot read ./{b.source}: {exc}", "check the files' permissions") from None
        found[b.target] = (digest.digest, digest.files, digest.bytes)
    total = sum(size for _d, _f, size in found.values())
    if total > limit:
        raise ConfigError(f"services.{svc.name}.volumes", f"its project binds hold {bounds.size_text(total)}, more "
                          f"than the {bounds.size_text(limit)} a release bakes into an image",
                          "bind less (a .dockerignore rule), or raise x-immutdock.binds.limit")
    return found


def plan_bake(svc: Service, base: ImagePlan, repository: str, baking: Baking, engine: Engine) -> ImagePlan:
    """The service's release image: `base` with its project binds copied in."""
    digests = hash_binds(svc, baking)
    bake = BakePlan(base=base, bakes=svc.bakes, baking=baking, digests={t: d for t, (d, _f, _b) in digests.items()},
                    sizes={t: b for t, (_d, _f, b) in digests.items()}, files=sum(f for _d, f, _b in digests.values()))
    if base.tag == "pending":
        return ImagePlan(service=svc.name, repository=repository, tag="pending", content_hash="", cached=False,
                         image_id=None, spec=None, missing_base=base.missing_base, bake=bake)
    identity = "sha256:" + hashlib.sha256(json.dumps(
        {"bake": BAKE_VERSION, "base": base.content_hash, "binds": bake.digests,
         "dockerfile": dockerfile(base.image, svc.bakes)}, sort_keys=True).encode()).hexdigest()
    tag = tag_for(identity)
    found = engine.inspect_image(f"{repository}:{tag}")
    cached = found is not None and ((found.get("Config") or {}).get("Labels") or {}).get(L.CONTENT_HASH) == identity
    return ImagePlan(service=svc.name, repository=repository, tag=tag, content_hash=identity, cached=cached,
                     image_id=found["Id"] if cached and found else None, spec=None, bake=bake)


def build_bake(item: ImagePlan, labels: Mapping[str, str], baking: Baking, compose: Compose,
               progress: Callable[[str], None]) -> None:
    """Build the baked image (its base is on the engine): its Dockerfile and the ignore rules
    beside it (BuildKit reads `Dockerfile.dockerignore` before the context's) are temp files
    that hold paths only."""
    assert item.bake is not None
    base = item.bake.base
    labels = {**labels, BAKE_LABEL: json.dumps({"base": base.content_hash, "base_image": base.image,
                                                "binds": dict(item.bake.digests)}, sort_keys=True, separators=(",", ":"))}
    progress(f"{item.service}: baking {len(item.bake.bakes)} project bind(s) "
             f"({bounds.size_text(item.bake.bytes)}) into {item.image}")
    with tempfile.TemporaryDirectory(prefix="immutdock-bake-") as folder:
        path = Path(folder) / "Dockerfile"
        path.write_text(dockerfile(base.image, item.bake.bakes))
        (Path(folder) / "Dockerfile.dockerignore").write_text("\n".join(baking.patterns) + "\n")
        for line in compose.build(baking.project_dir, dockerfile=path, tag=item.image, labels=labels, args={}, target=None,
                                  secrets=[], build_contexts={}):
            progress(f"{item.service}: {line}")


def bake_images(plans: list[ImagePlan], app: App, engine: Engine) -> list[ImagePlan]:
    """`plans` with the image of each service that has project binds baked over its own."""
    services = app.services
    if not any(s.bakes for s in services.values()):
        return plans
    baking = baking_of(app)
    return [plan_bake(services[p.service], p, p.repository, baking, engine)
            if services.get(p.service) is not None and services[p.service].bakes else p for p in plans]


def base_of(found: Mapping[str, object] | None) -> str | None:
    """The own image (its reference) a baked image was made FROM, as its label says."""
    labels = ((found or {}).get("Config") or {}).get("Labels") or {}  # type: ignore[union-attr]
    try:
        base = json.loads(labels.get(BAKE_LABEL) or "{}").get("base_image")  # type: ignore[union-attr]
    except (ValueError, AttributeError):
        return None
    return str(base) if base else None


def differing_bake(svc: Service, baking: Baking, labels: Mapping[str, str], own_identity: str | None) -> list[str]:
    """What differs between a baked release image (its labels) and the checkout: each bind whose
    files changed, named, and the service's own image (`own_identity`: its identity now, a
    build's content hash or a pulled image's ID; None when it cannot be known here)."""
    try:
        recorded = json.loads(labels.get(BAKE_LABEL) or "")
    except ValueError:
        return ["(which input: the image has no bake label; it was built by an older immutdock)"]
    now = hash_binds(svc, baking)
    was = dict(recorded.get("binds") or {})
    found = [f"bind ./{b.source} at {b.target} changed" for b in svc.bakes
             if was.get(b.target) != now.get(b.target, ("",))[0]]
    found += [f"bind at {target} is no longer in the file" for target in sorted(set(was) - set(now))]
    if own_identity is not None and own_identity != recorded.get("base"):
        found.append(f"{svc.name}'s own image changed ({tag_for(own_identity)} now, "
                     f"{tag_for(str(recorded.get('base')))} released)")
    return found
