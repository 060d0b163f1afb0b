"""The build digest: one hash over everything an image build is made from.

:func:`build_digest` serialises :class:`BuildInputs` to canonical JSON (sorted keys, no
insignificant whitespace, the Dockerfile as its SHA-256) together with
:data:`immutdock.identity.contexthash.ALGORITHM_VERSION`, and hashes it. :func:`tag_for` derives
the image tag from that digest alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from immutdock.identity.contexthash import ALGORITHM_VERSION, ContextDigest

__all__ = ["TAG_LENGTH", "BuildInputs", "build_digest", "canonical_json", "differing_inputs", "recorded_inputs",
           "tag_for"]

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


def recorded_inputs(inputs: BuildInputs, salt: str | None = None) -> dict[str, object]:
    """What an image's label keeps of its build inputs: digests only. Build arg values are
    salted scrypt digests (a value is never kept in clear, see redact.py); the context keeps
    one digest per top-level entry, so that `differing_inputs` can name the one that changed."""
    from immutdock.identity.redact import Redactor, new_salt

    redactor = Redactor(salt or new_salt())
    found = inputs.canonical()
    found.update(context_parts=dict(inputs.context.parts), salt=redactor.salt,
                 args={k: redactor.digest(v) for k, v in inputs.args.items()})
    return found


def differing_inputs(recorded: Mapping[str, object], current: BuildInputs, dockerfile: str | None = None) -> list[str]:
    """Which inputs of `current` differ from those `recorded` (recorded_inputs of an earlier
    build), each named: a file or folder of the context, the Dockerfile, a build arg, a base
    image (with both IDs), the target, an additional context, the build secrets' ids.
    `dockerfile`: the Dockerfile's path in the context, named once, as the Dockerfile."""
    now = recorded_inputs(current, str(recorded.get("salt") or "00"))
    found: list[str] = []
    if recorded.get("algorithm") != now["algorithm"]:
        found.append(f"immutdock's hashing (version {recorded.get('algorithm')} -> {now['algorithm']})")
    if recorded.get("context") != now["context"]:
        before, after = dict(recorded.get("context_parts") or {}), dict(now["context_parts"])  # type: ignore[arg-type]
        if dockerfile and recorded.get("dockerfile") != now["dockerfile"]:
            before.pop(dockerfile, None)
            after.pop(dockerfile, None)
        named = [f"file {n} changed" for n in sorted(set(before) & set(after)) if before[n] != after[n]]
        named += [f"file {n} added" for n in sorted(set(after) - set(before))]
        named += [f"file {n} removed" for n in sorted(set(before) - set(after))]
        found += named if before and after else ["the build context's files"]
    if recorded.get("dockerfile") != now["dockerfile"]:
        found.append("the Dockerfile")
    for kind, label in (("args", "build arg"), ("base_image_ids", "base image"),
                        ("additional_contexts", "additional context")):
        before, after = dict(recorded.get(kind) or {}), dict(now[kind])  # type: ignore[arg-type]
        for name in sorted(set(before) | set(after)):
            if before.get(name) == after.get(name):
                continue
            if name not in before or name not in after:
                found.append(f"{label} {name} {'added' if name in after else 'removed'}")
            elif kind == "base_image_ids":
                found.append(f"base image {name} ({_short(before[name])} -> {_short(after[name])})")
            else:
                found.append(f"{label} {name}")
    if recorded.get("target") != now["target"]:
        found.append(f"the build target ({recorded.get('target')} -> {now['target']})")
    if sorted(recorded.get("secrets_ids") or []) != now["secrets_ids"]:  # type: ignore[call-overload]
        found.append("the build secrets' ids")
    return found


def _short(image_id: object) -> str:
    return str(image_id).rpartition(":")[2][:12]
