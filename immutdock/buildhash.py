"""The build digest: one hash over everything an image build is made from.

:func:`build_digest` serialises :class:`BuildInputs` to canonical JSON (sorted keys, no
insignificant whitespace, the Dockerfile as its SHA-256) together with
:data:`immutdock.contexthash.ALGORITHM_VERSION`, and hashes it. :func:`tag_for` derives
the image tag from that digest alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from immutdock.contexthash import ALGORITHM_VERSION, ContextDigest

__all__ = ["TAG_LENGTH", "BuildInputs", "build_digest", "canonical_json", "tag_for"]

TAG_LENGTH = 12
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


def _frozen(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class BuildInputs:
    """Everything an image build depends on. Mappings are copied into read-only views."""

    context: ContextDigest
    dockerfile_text: bytes
    args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    additional_contexts: Mapping[str, str] = field(default_factory=dict)  # name -> digest or image
    base_image_ids: Mapping[str, str] = field(default_factory=dict)  # reference -> image id
    secrets_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("args", "additional_contexts", "base_image_ids"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "secrets_ids", tuple(self.secrets_ids))

    def canonical(self) -> dict[str, object]:
        """The JSON-ready form that is hashed (a stable, documented shape)."""
        return {
            "algorithm": ALGORITHM_VERSION,
            "context": self.context.digest,
            "dockerfile": "sha256:" + hashlib.sha256(self.dockerfile_text).hexdigest(),
            "args": dict(self.args),
            "target": self.target,
            "additional_contexts": dict(self.additional_contexts),
            "base_image_ids": dict(self.base_image_ids),
            "secrets_ids": sorted(set(self.secrets_ids)),
        }


def canonical_json(inputs: BuildInputs) -> bytes:
    """Canonical UTF-8 JSON of `inputs`: sorted keys, compact separators."""
    return json.dumps(inputs.canonical(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("utf-8")


def build_digest(inputs: BuildInputs) -> str:
    """``"sha256:<hex>"`` of the canonical JSON of `inputs`."""
    return "sha256:" + hashlib.sha256(canonical_json(inputs)).hexdigest()


def tag_for(digest: str) -> str:
    """The image tag for a build digest: its first 12 hex characters."""
    found = _DIGEST.fullmatch(digest)
    if not found:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return found.group(1)[:TAG_LENGTH]
