"""Unit tests for immutdock.identity.buildhash: the build digest and the tag derived from it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest

from immutdock.identity.buildhash import BuildInputs, build_digest, canonical_json, tag_for
from immutdock.identity.contexthash import ALGORITHM_VERSION, ContextDigest

CONTEXT = ContextDigest(digest="sha256:" + "1" * 64, files=3, bytes=100)


def inputs(**changes: Any) -> BuildInputs:
    base = BuildInputs(
        context=CONTEXT,
        dockerfile_text=b"FROM debian:bookworm-slim\nCOPY . /app\n",
        args={"A": "1", "B": "2"},
        target="runtime",
        additional_contexts={"assets": "sha256:" + "2" * 64, "tools": "docker-image://busybox"},
        base_image_ids={"debian:bookworm-slim": "sha256:" + "3" * 64},
        secrets_ids=("npm", "pip"),
    )
    return dataclasses.replace(base, **changes)


def test_digest_format_and_determinism() -> None:
    first, second = build_digest(inputs()), build_digest(inputs())
    assert first == second
    assert first.startswith("sha256:") and len(first) == 71
    int(first[7:], 16)


def test_digest_is_pinned() -> None:
    """Changing the canonical form must come with a new ALGORITHM_VERSION."""
    assert ALGORITHM_VERSION == 1
    dockerfile = hashlib.sha256(b"FROM debian:bookworm-slim\nCOPY . /app\n").hexdigest()
    expected = (
        '{"additional_contexts":{"assets":"sha256:' + "2" * 64 + '","tools":"docker-image://busybox"},'
        '"algorithm":1,"args":{"A":"1","B":"2"},'
        '"base_image_ids":{"debian:bookworm-slim":"sha256:' + "3" * 64 + '"},'
        '"context":"sha256:' + "1" * 64 + '","dockerfile":"sha256:' + dockerfile + '",'
        '"secrets_ids":["npm","pip"],"target":"runtime"}'
    )
    assert canonical_json(inputs()) == expected.encode()
    assert build_digest(inputs()) == "sha256:" + hashlib.sha256(expected.encode()).hexdigest()


@pytest.mark.parametrize("change", [
    {"context": ContextDigest(digest="sha256:" + "9" * 64, files=3, bytes=100)},
    {"dockerfile_text": b"FROM debian:bookworm-slim\nCOPY . /srv\n"},
    {"dockerfile_text": b"FROM debian:bookworm-slim\nCOPY . /app\n# comment\n"},
    {"args": {"A": "1", "B": "3"}},
    {"args": {"A": "1"}},
    {"args": {"A": "1", "B": "2", "C": ""}},
    {"target": None},
    {"target": ""},
    {"target": "build"},
    {"additional_contexts": {"assets": "sha256:" + "4" * 64, "tools": "docker-image://busybox"}},
    {"additional_contexts": {"assets": "sha256:" + "2" * 64}},
    {"base_image_ids": {"debian:bookworm-slim": "sha256:" + "5" * 64}},
    {"base_image_ids": {"debian:trixie-slim": "sha256:" + "3" * 64}},
    {"secrets_ids": ("npm",)},
    {"secrets_ids": ("npm", "pip", "git")},
], ids=lambda change: next(iter(change)))
def test_every_input_changes_the_digest(change: dict[str, Any]) -> None:
    assert build_digest(inputs(**change)) != build_digest(inputs())


def test_mapping_order_does_not_matter() -> None:
    reordered = inputs(
        args={"B": "2", "A": "1"},
        additional_contexts={"tools": "docker-image://busybox", "assets": "sha256:" + "2" * 64},
        base_image_ids=dict(reversed(list(inputs().base_image_ids.items()))),
    )
    assert build_digest(reordered) == build_digest(inputs())


def test_secret_order_does_not_matter() -> None:
    assert build_digest(inputs(secrets_ids=("pip", "npm"))) == build_digest(inputs())


def test_only_the_context_digest_counts_not_its_statistics() -> None:
    same = ContextDigest(digest=CONTEXT.digest, files=999, bytes=1)
    assert build_digest(inputs(context=same)) == build_digest(inputs())


def test_args_with_keys_looking_alike_do_not_collide() -> None:
    one = inputs(args={"A": "1=B", "B": ""})
    two = inputs(args={"A": "1", "B": "=B"})
    assert build_digest(one) != build_digest(two)


def test_canonical_json_is_sorted_compact_and_complete() -> None:
    raw = canonical_json(inputs())
    data = json.loads(raw)
    assert raw == json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    assert data["algorithm"] == ALGORITHM_VERSION
    assert data["context"] == CONTEXT.digest
    assert data["dockerfile"].startswith("sha256:")
    assert data["args"] == {"A": "1", "B": "2"}
    assert data["target"] == "runtime"
    assert data["secrets_ids"] == ["npm", "pip"]
    assert set(data) == {"algorithm", "context", "dockerfile", "args", "target",
                         "additional_contexts", "base_image_ids", "secrets_ids"}


def test_inputs_are_frozen_copies() -> None:
    args = {"A": "1", "B": "2"}
    frozen = inputs(args=args)
    before = build_digest(frozen)
    args["A"] = "changed"
    assert build_digest(frozen) == before
    with pytest.raises(TypeError):
        frozen.args["A"] = "x"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        frozen.target = "x"  # type: ignore[misc]


def test_non_ascii_values_hash() -> None:
    assert build_digest(inputs(args={"GREETING": "héllo ☺"})) != build_digest(inputs())


# --------------------------------------------------------------------------- tag_for


def test_tag_is_the_first_12_hex_characters() -> None:
    assert tag_for("sha256:0123456789abcdef" + "0" * 48) == "0123456789ab"


def test_tag_depends_only_on_the_digest() -> None:
    digest = build_digest(inputs())
    assert tag_for(digest) == digest[7:19]
    assert tag_for(digest) != tag_for(build_digest(inputs(target="other")))


@pytest.mark.parametrize("bad", ["", "abc", "sha256:xyz", "sha256:" + "0" * 63, "md5:" + "0" * 64,
                                 "sha256:" + "A" * 64, "0" * 64])
def test_tag_for_rejects_non_digests(bad: str) -> None:
    with pytest.raises(ValueError):
        tag_for(bad)


# -- what an image's label keeps of its inputs, and naming what changed ------------------------
from immutdock.identity.buildhash import differing_inputs, recorded_inputs  # noqa: E402

PARTED = ContextDigest(digest="sha256:" + "2" * 64, files=3, bytes=100,
                       parts={"app.py": "a" * 16, "static": "b" * 16, "Dockerfile": "c" * 16})


def _inputs(**changes: Any) -> BuildInputs:
    base = dict(context=PARTED, dockerfile_text=b"FROM python:3.12\n", args={"VERSION": "1.2", "TOKEN": "hunter22"},
                base_image_ids={"python:3.12": "sha256:" + "e" * 64})
    return BuildInputs(**{**base, **changes})


def test_the_label_keeps_no_build_arg_value_in_clear_and_the_same_inputs_differ_in_nothing() -> None:
    kept = recorded_inputs(_inputs())
    text = json.dumps(kept)
    assert "hunter22" not in text and "1.2" not in text and set(kept["args"]) == {"VERSION", "TOKEN"}
    assert kept["context_parts"] == PARTED.parts and kept["base_image_ids"] == {"python:3.12": "sha256:" + "e" * 64}
    assert differing_inputs(json.loads(text), _inputs()) == []


def test_each_input_that_changed_is_named() -> None:
    kept = json.loads(json.dumps(recorded_inputs(_inputs())))
    moved = dataclasses.replace(PARTED, digest="sha256:" + "3" * 64,
                                parts={"app.py": "f" * 16, "Dockerfile": "c" * 16, "new.txt": "d" * 16})
    assert differing_inputs(kept, _inputs(context=moved)) == [
        "file app.py changed", "file new.txt added", "file static removed"]
    assert differing_inputs(kept, _inputs(args={"VERSION": "1.3", "TOKEN": "hunter22", "DEBUG": "1"})) == [
        "build arg DEBUG added", "build arg VERSION"]
    assert differing_inputs(kept, _inputs(base_image_ids={"python:3.12": "sha256:" + "9" * 64})) == [
        f"base image python:3.12 ({'e' * 12} -> {'9' * 12})"]
    assert differing_inputs(kept, _inputs(target="prod")) == ["the build target (None -> prod)"]
    assert differing_inputs(kept, _inputs(secrets_ids=("npm",))) == ["the build secrets' ids"]


def test_a_changed_dockerfile_is_named_once_and_a_context_without_parts_as_a_whole() -> None:
    kept = json.loads(json.dumps(recorded_inputs(_inputs())))
    moved = dataclasses.replace(PARTED, digest="sha256:" + "3" * 64, parts={**PARTED.parts, "Dockerfile": "0" * 16})
    assert differing_inputs(kept, _inputs(context=moved, dockerfile_text=b"FROM python:3.13\n"),
                            dockerfile="Dockerfile") == ["the Dockerfile"]
    flat = dataclasses.replace(PARTED, digest="sha256:" + "4" * 64, parts={})  # too many top-level entries
    assert differing_inputs(kept, _inputs(context=flat)) == ["the build context's files"]
