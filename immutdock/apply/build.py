"""Content-addressed builds: observe the inputs, plan (hash -> tag, cached or not), apply."""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Mapping

from immutdock import labels as L
from immutdock.config.model import App, BuildSpec
from immutdock.errors import ConfigError, Unavailable
from immutdock.gateways.compose import Compose
from immutdock.gateways.engine import Engine
from immutdock.gateways.docker_api import _short
from immutdock.gateways.engine_images import PULL_HINT, PullFailed
from immutdock.identity.buildhash import BuildInputs, build_digest, recorded_inputs, tag_for
from immutdock.identity.contexthash import hash_context
from immutdock.identity.dockerfile import base_images
from immutdock.apply.bake import bake_images, build_bake
from immutdock.plan.imageplan import ImagePlan
from immutdock.progress import Status

Progress = Callable[[str], None]


PIN_PREFIX = "id-"  # the tag of a pulled image pinned under the app's own name: id-<12 hex of its ID>


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


def plan_image(service: str, repository: str, spec: BuildSpec, engine: Engine, pull: bool = True,
               where: str | None = None) -> ImagePlan:
    """The image's tag from its content. Without `pull`, a base image the engine lacks leaves
    the tag unknown ("pending"): the image is then planned as a build. `where`: the file's
    key of the build (default services.<service>.build)."""
    where = where or f"services.{service}.build"
    try:
        inputs = build_inputs(spec, engine, pull)
        digest = build_digest(inputs)
    except MissingBase as missing:
        return ImagePlan(service=service, repository=repository, tag="pending", content_hash="", cached=False,
                         image_id=None, spec=spec, missing_base=str(missing))
    except PullFailed as exc:
        raise unobtainable(where, exc.ref, exc.why, base=True) from None
    except OSError as exc:
        raise ConfigError(where, f"cannot read the build context: {exc}", "check the files' permissions") from None
    except ValueError as exc:  # an invalid .dockerignore pattern
        raise ConfigError(f"services.{service}.build.context", f".dockerignore: {exc}",
                          "fix the pattern (Docker's own syntax)") from None
    tag = tag_for(digest)
    found = engine.inspect_image(f"{repository}:{tag}")  # one request: ID and labels
    image_id = found["Id"] if found else None
    cached = found is not None and ((found.get("Config") or {}).get("Labels") or {}).get(L.CONTENT_HASH) == digest
    return ImagePlan(service=service, repository=repository, tag=tag, content_hash=digest,
                     cached=cached, image_id=image_id if cached else None, spec=spec, inputs=inputs)


def plan_images(app_name: str, specs: Mapping[str, BuildSpec], engine: Engine, pull: bool = True) -> list[ImagePlan]:
    """Hash every build (in parallel: hashing is I/O and hashlib releases the GIL)."""
    items = list(specs.items())
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(plan_image, svc, f"{app_name}-{svc}", spec, engine, pull) for svc, spec in items]
        return [f.result() for f in futures]


def unobtainable(where: str, ref: str, why: str, base: bool = False) -> Unavailable:
    """The error of an image the engine lacks and cannot pull, as release and plan both say it."""
    return Unavailable(where, f"{'its base image' if base else 'image'} {ref} is not on the engine and cannot be "
                              f"pulled ({why})", PULL_HINT)


def check_obtainable(images: Iterable[ImagePlan], engine: Engine, router: ImagePlan | None = None,
                     router_where: str = "x-immutdock.router") -> None:
    """Each image (or base) the engine lacks, looked up in its registry without pulling: the
    first that cannot be had raises the error its pull would (plan tells what release would)."""
    wanted = [(i.own, f"services.{i.service}.{'image' if i.own.source else 'build'}") for i in images]
    wanted += [(router, router_where)] if router is not None else []
    for item, where in wanted:
        if item.missing_base:
            why = engine.registry_lookup(item.missing_base)
            if why:
                raise unobtainable(where, item.missing_base, _short(why), base=item.source is None)


def pinned_tag(image_id: str) -> str:
    return PIN_PREFIX + image_id.rpartition(":")[2][:12]


def is_pin(app_name: str, ref: str) -> bool:
    """A tag immutdock gave a pulled image of this app (prune may remove it)."""
    repository, _, tag = ref.rpartition(":")
    return repository.startswith(f"{app_name}-") and tag.startswith(PIN_PREFIX)


def plan_pulled(service: str, repository: str, source: str, policy: str, engine: Engine, pull: bool = True,
                pinned: bool = True, progress: Progress = lambda _l: None) -> ImagePlan:
    """An image-only service's image, by ID. With `pull` (a release) it is pulled as compose's
    `pull_policy` says: `always` every time, `never` not at all, otherwise (missing,
    if_not_present, daily, ...) when the engine lacks it. Without `pull` (plan) a missing image
    is planned as a pull ("pending")."""
    said: Progress = lambda line: progress(_about(service, line))
    try:
        if pull and policy == "always":
            engine.pull(source, said)
        found = engine.image_id(source)
        if found is None and policy == "never":
            raise ConfigError(f"services.{service}.pull_policy", f"is never, and image {source} is not on the engine",
                              "load it (docker load -i FILE) or drop pull_policy so a release pulls it")
        if found is None and pull:
            found = engine.resolve_image(source, progress=said)  # raises when the pull does not bring it
    except PullFailed as exc:
        raise unobtainable(f"services.{service}.image", exc.ref, exc.why) from None
    if found is None:
        return ImagePlan(service=service, repository=repository, tag="pending", content_hash="", cached=False,
                         image_id=None, spec=None, missing_base=source, source=source, pinned=pinned)
    tag = pinned_tag(found)
    cached = not pinned or engine.image_id(f"{repository}:{tag}") == found
    return ImagePlan(service=service, repository=repository, tag=tag, content_hash=found, cached=cached,
                     image_id=found, spec=None, source=source, pinned=pinned)


def plan_app_images(app: App, engine: Engine, pull: bool = True,
                    progress: Progress = lambda _l: None) -> list[ImagePlan]:
    """Every image the app runs: its builds hashed, its image-only services resolved by ID
    (pulled, with `pull`, as their pull_policy says)."""
    plans = plan_images(app.name, {s.name: s.build for s in app.services.values() if s.build}, engine, pull)
    for svc in app.services.values():
        if svc.build is None and svc.image:
            plans.append(plan_pulled(svc.name, f"{app.name}-{svc.name}", svc.image,
                                     str(svc.definition.get("pull_policy") or "missing"), engine, pull,
                                     pinned=not svc.stateful, progress=progress))
    return bake_images(plans, app, engine)


def _git(project_dir: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(project_dir), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


UNCOMMITTED = "_uncommitted"  # the mark of a revision whose checkout has changes not committed


def git_revision(project_dir: Path) -> str | None:
    """The checkout's revision, marked `<sha>_uncommitted` when a file differs from it or a file
    git does not ignore is not in it (as Kamal marks its versions), or when git cannot tell."""
    revision = _git(project_dir, "rev-parse", "HEAD")
    if revision is None:
        return None
    try:
        status = subprocess.run(["git", "--no-optional-locks", "-C", str(project_dir), "status", "--porcelain",
                                 "--ignore-submodules=dirty", "--", "."], capture_output=True, text=True, timeout=10)
        clean = status.returncode == 0 and not status.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        clean = False
    return revision if clean else revision + UNCOMMITTED


Checkout = tuple[str, str | None]  # where the source is (git's remote origin, else the folder), its revision


def checkout(project_dir: Path) -> Checkout:
    """The project's source as its images' labels and its records name it."""
    return _git(project_dir, "remote", "get-url", "origin") or str(project_dir), git_revision(project_dir)


def checkout_once(project_dir: Path, now: bool = False) -> Callable[[], Checkout]:
    """`checkout(project_dir)`, read once and kept: by the first caller (of any thread), or
    with `now` at once by a daemon thread (it only reads: a command that ends before it needs
    the answer does not wait for it)."""
    lock, found = threading.Lock(), []

    def read() -> Checkout:
        with lock:
            if not found:
                found.append(checkout(project_dir))
            return found[0]
    if now:
        threading.Thread(target=read, name="git", daemon=True).start()
    return read


def oci_labels(app_name: str, item: ImagePlan, source: Checkout) -> dict[str, str]:
    found = {
        L.APP: app_name, L.ROLE: "image", L.SERVICE: item.service, L.CONTENT_HASH: item.content_hash,
        L.OCI_CREATED: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        L.OCI_VERSION: item.tag, L.OCI_SOURCE: source[0],
    }
    revision = source[1]
    if revision:
        found[L.OCI_REVISION] = revision
    if item.inputs is not None:  # what `verify` compares a later checkout with (no arg value in clear)
        found[L.INPUTS] = json.dumps(recorded_inputs(item.inputs), sort_keys=True, separators=(",", ":"))
    return found


def build_one(service: str, spec: BuildSpec, tag: str, labels: Mapping[str, str], compose: Compose,
              progress: Progress = lambda _l: None, cache: bool = True) -> None:
    """One build of `spec` into `tag`, its output as progress lines."""
    for line in compose.build(spec.context, dockerfile=spec.dockerfile, tag=tag, labels=labels, args=spec.args,
                              target=spec.target, secrets=[f"id={s.id},{s.source}" for s in spec.secrets],
                              build_contexts=spec.additional_contexts, cache=cache):
        progress(_about(service, line))


def _about(service: str, text: str) -> Status:
    """A line of an image's progress: the state of that image's row in a live view."""
    return Status(f"image {service}", f"{service}: {text}")


def _apply_bake(app_name: str, item: ImagePlan, project_dir: Path, engine: Engine, compose: Compose,
                progress: Progress, source: Callable[[], Checkout]) -> ImagePlan:
    """The service's own image first, then its project binds baked over it (unless cached)."""
    import dataclasses

    assert item.bake is not None
    base = apply_images(app_name, [item.bake.base], project_dir, engine, compose, progress, source)[0]
    item = dataclasses.replace(item, bake=dataclasses.replace(item.bake, base=base))
    if item.cached:
        progress(_about(item.service, f"{item.image} cached (its project binds baked)"))
        return item
    build_bake(item, oci_labels(app_name, item, source()), item.bake.baking, compose,
               lambda line: progress(_about(item.service, line.partition(": ")[2] or line)))
    return dataclasses.replace(item, image_id=engine.image_id(item.image))


BUILDS_AT_ONCE = 3  # independent builds run together (BuildKit shares its cache between them)


def _together(items: list[int], build: Callable[[int], None], stop: threading.Event) -> None:
    """build(i) for each item, BUILDS_AT_ONCE at a time; the first failure (or an interrupt)
    sets `stop` and cancels what has not begun, once the builds that run have ended."""
    if len(items) <= 1:
        for i in items:
            build(i)
        return
    pool = ThreadPoolExecutor(max_workers=BUILDS_AT_ONCE, thread_name_prefix="build")
    try:
        for future in [pool.submit(build, i) for i in items]:
            future.result()
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def apply_images(app_name: str, plans: Iterable[ImagePlan], project_dir: Path, engine: Engine,
                 compose: Compose, progress: Progress = lambda _l: None,
                 source: Callable[[], Checkout] | None = None) -> list[ImagePlan]:
    """Build what is not cached, the independent builds together; an identical build of
    another service is tagged, not rebuilt. Images with project binds are baked after. What
    an image's labels say of the source is `source()` (default: read from `project_dir`
    once, when something is built)."""
    plans = list(plans)
    source = source or checkout_once(project_dir)
    done: dict[int, ImagePlan] = {}
    firsts: dict[str, int] = {}  # content hash -> the plan that builds it
    for i, item in enumerate(plans):
        if item.bake is not None:
            continue
        if item.cached:
            if item.spec is not None:
                progress(_about(item.service, f"{item.image} cached"))
            done[i] = item
        elif item.source is not None:  # pulled while planned: pinned now
            assert item.image_id is not None, f"{item.source} was not pulled"
            progress(_about(item.service, f"{item.source} pinned as {item.image}"))
            engine.tag(item.image_id, item.repository, item.tag)
            done[i] = item
        else:
            firsts.setdefault(item.content_hash, i)

    stop = threading.Event()  # set on a failure or an interrupt: no build that has not begun begins

    def build(i: int) -> None:
        item = plans[i]
        assert item.spec is not None
        if stop.is_set():
            return
        progress(_about(item.service, f"building {item.image}"))
        try:
            build_one(item.service, item.spec, item.image, oci_labels(app_name, item, source()), compose, progress)
        except BaseException:
            stop.set()  # before this thread takes the next build
            raise
        progress(_about(item.service, f"built {item.image}"))

    _together(sorted(firsts.values()), build, stop)
    for i, item in enumerate(plans):
        if i in done or item.bake is not None:
            continue
        first = plans[firsts[item.content_hash]]
        if first is not item:
            progress(_about(item.service, f"same content as {first.service}, tagging {item.image}"))
            engine.tag(first.image, item.repository, item.tag)
        done[i] = ImagePlan(service=item.service, repository=item.repository, tag=item.tag,
                            content_hash=item.content_hash, cached=False, image_id=engine.image_id(item.image),
                            spec=item.spec)
    for i, item in enumerate(plans):
        if item.bake is not None:
            done[i] = _apply_bake(app_name, item, project_dir, engine, compose, progress, source)
    return [done[i] for i in range(len(plans))]
