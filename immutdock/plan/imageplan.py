"""What a release does about one image, as plain data (planned by immutdock.apply.build)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pathlib import Path
from typing import Mapping

from immutdock.config.binds import Bake
from immutdock.config.model import BuildSpec
from immutdock.identity.buildhash import BuildInputs


@dataclass(frozen=True)
class Baking:
    """What every bake of an app reads (see immutdock.apply.bake.baking_of): its project folder,
    the .dockerignore rules its bakes use (the project's, then those of the files never baked:
    `private`) and the most one service's binds may hold."""

    project_dir: Path
    patterns: tuple[str, ...]
    private: tuple[str, ...]
    limit: int


@dataclass(frozen=True)
class BakePlan:
    """A service's project binds baked over its own image (`base`), see immutdock.apply.bake."""

    base: "ImagePlan"
    bakes: tuple[Bake, ...]
    baking: Baking
    digests: Mapping[str, str]  # mount path -> the digest of that bind's files
    sizes: Mapping[str, int]  # mount path -> the bytes of that bind's files
    files: int

    @property
    def bytes(self) -> int:
        return sum(self.sizes.values())

    def as_json(self) -> dict[str, object]:
        return {"base": self.base.image, "files": self.files, "bytes": self.bytes,
                "binds": [{**b.as_json(), "digest": self.digests.get(b.target), "bytes": self.sizes.get(b.target)}
                          for b in self.bakes]}


@dataclass(frozen=True)
class ImagePlan:
    """One image to have on the engine: built now, or already there (cached); or, for an
    image-only service (`source`), pulled and pinned by its ID under the app's own tag
    (`<app>-<service>:id-<ID>`), or, for a stateful one (`pinned` False), run as the file names it."""

    service: str
    repository: str
    tag: str
    content_hash: str  # a pulled image's: its image ID
    cached: bool  # built: the tag holds this content; pulled: the pin holds this ID
    image_id: str | None
    spec: BuildSpec | None  # None for a pulled image
    missing_base: str | None = None  # an image the engine lacks, planned without pulling it
    source: str | None = None  # a pulled image: the file's image:
    pinned: bool = True  # a pulled image runs under its pin (the colors' services), else as `source`
    inputs: BuildInputs | None = field(default=None, compare=False, repr=False)  # a build's, as hashed
    bake: BakePlan | None = None  # the project binds baked over the service's own image

    @property
    def own(self) -> "ImagePlan":
        """The service's own image: built or pulled (the base of a baked one)."""
        return self.bake.base if self.bake is not None else self

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag}" if self.pinned else str(self.source)

    def as_json(self) -> dict[str, object]:
        found: dict[str, object] = {"service": self.service, "image": self.image, "content_hash": self.content_hash,
                                    "cached": self.cached, "image_id": self.image_id,
                                    "missing_base": None if self.source else self.missing_base}
        if self.source:
            found.update(pulled_from=self.source, missing=self.missing_base is not None)
        if self.bake is not None:
            found["baked"] = self.bake.as_json()
            found["base"] = self.bake.base.as_json()
        return found
