"""Unit tests for immutdock.identity.dockerfile: which external images a Dockerfile builds from."""

from __future__ import annotations

import pytest

from immutdock.identity.dockerfile import base_images, expand, instructions


def images(text: str, **build_args: str) -> list[str]:
    return base_images(text, build_args)


# --------------------------------------------------------------------------- FROM basics


def test_single_from() -> None:
    assert images("FROM python:3.12-slim\nRUN true\n") == ["python:3.12-slim"]


def test_multiple_froms_in_order_deduplicated() -> None:
    text = "FROM golang:1.22 AS build\nFROM alpine:3.19\nFROM golang:1.22\n"
    assert images(text) == ["golang:1.22", "alpine:3.19"]


def test_keyword_case_does_not_matter() -> None:
    assert images("from debian:bookworm As base\nFrOm base\n") == ["debian:bookworm"]


def test_platform_flag_is_skipped() -> None:
    text = "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nFROM --platform=linux/amd64 alpine\n"
    assert images(text) == ["golang:1.22", "alpine"]


def test_stage_names_are_not_external_images() -> None:
    text = (
        "FROM node:20 AS deps\n"
        "FROM deps AS build\n"
        "FROM nginx:1.25\n"
        "COPY --from=build /app/dist /usr/share/nginx/html\n"
    )
    assert images(text) == ["node:20", "nginx:1.25"]


def test_stage_names_are_case_insensitive() -> None:
    assert images("FROM alpine AS Builder\nFROM BUILDER\n") == ["alpine"]


def test_scratch_is_not_an_image() -> None:
    assert images("FROM golang AS b\nFROM scratch\nCOPY --from=b /x /x\n") == ["golang"]
    assert images("FROM SCRATCH\n") == []


def test_digest_references_are_kept_verbatim() -> None:
    ref = "alpine@sha256:" + "ab" * 32
    assert images(f"FROM {ref}\n") == [ref]


def test_a_stage_can_be_named_like_its_base_image() -> None:
    assert images("FROM node AS node\nFROM node\n") == ["node"]


# --------------------------------------------------------------------------- lexing


def test_comments_and_blank_lines_are_ignored() -> None:
    text = "# FROM commented:out\n\n   # FROM indented:comment\nFROM real:1\n"
    assert images(text) == ["real:1"]


def test_line_continuations() -> None:
    text = "FROM \\\n    --platform=linux/arm64 \\\n    alpine:3.19 \\\n    AS base\nFROM base\n"
    assert images(text) == ["alpine:3.19"]


def test_comment_lines_inside_a_continuation_are_dropped() -> None:
    text = "RUN echo a \\\n# FROM not:this\n    && echo b\nFROM real\n"
    assert images(text) == ["real"]


def test_escape_directive_backtick() -> None:
    text = "# escape=`\nFROM `\n  mcr.microsoft.com/windows/servercore:ltsc2022\nRUN dir c:\\\n"
    assert images(text) == ["mcr.microsoft.com/windows/servercore:ltsc2022"]


def test_heredoc_bodies_are_not_instructions() -> None:
    text = (
        "FROM alpine\n"
        "RUN <<EOF\n"
        "FROM not-an-image\n"
        "EOF\n"
        "COPY <<-'SCRIPT' /run.sh\n"
        "\tFROM also-not\n"
        "\tSCRIPT\n"
        "FROM busybox\n"
    )
    assert images(text) == ["alpine", "busybox"]


def test_here_string_is_not_a_heredoc() -> None:
    assert images('FROM alpine\nRUN cat <<<"x"\nFROM busybox\n') == ["alpine", "busybox"]


def test_crlf_line_endings() -> None:
    assert images("ARG V=1\r\nFROM img:${V}\r\nFROM \\\r\n  other\r\n") == ["img:1", "other"]


def test_instructions_split_keyword_and_args() -> None:
    found = list(instructions("from  alpine \nRUN a \\\n b\n"))
    assert [(i.keyword, i.args, i.line) for i in found] == [("FROM", "alpine", 1), ("RUN", "a  b", 2)]


def test_instruction_line_numbers_skip_blank_and_comment_lines() -> None:
    found = list(instructions("# syntax=docker/dockerfile:1\n\n# hi\nFROM a\n\n\nRUN \\\n\n  x\n"))
    assert [(i.keyword, i.line) for i in found] == [("FROM", 4), ("RUN", 7)]


# --------------------------------------------------------------------------- ARG substitution


def test_arg_default_is_substituted() -> None:
    assert images("ARG TAG=3.12\nFROM python:$TAG\n") == ["python:3.12"]


def test_build_arg_overrides_the_default() -> None:
    assert images("ARG TAG=3.12\nFROM python:${TAG}\n", TAG="3.13") == ["python:3.13"]


def test_default_operator() -> None:
    text = "ARG TAG\nFROM python:${TAG:-3.11}\n"
    assert images(text) == ["python:3.11"]
    assert images(text, TAG="3.10") == ["python:3.10"]


def test_undeclared_build_args_are_not_used_in_from() -> None:
    assert images("FROM busybox:${V:-1}\n", V="9") == ["busybox:1"]


def test_args_declared_inside_a_stage_do_not_reach_later_froms() -> None:
    text = "FROM alpine\nARG V=2\nFROM busybox:${V:-1}\n"
    assert images(text, V="3") == ["alpine", "busybox:1"]


def test_several_args_quoted_defaults_and_references() -> None:
    text = (
        'ARG REGISTRY="registry.example.com:5000" NAME=app\n'
        "ARG IMAGE=${REGISTRY}/${NAME}\n"
        "FROM $IMAGE:latest\n"
    )
    assert images(text) == ["registry.example.com:5000/app:latest"]
    assert images(text, NAME="api") == ["registry.example.com:5000/api:latest"]


def test_build_arg_overrides_a_default_used_by_a_later_default() -> None:
    text = "ARG DISTRO=bookworm\nARG BASE=debian:${DISTRO}-slim\nFROM ${BASE}\n"
    assert images(text, DISTRO="trixie") == ["debian:trixie-slim"]
    assert images(text, BASE="ubuntu:24.04") == ["ubuntu:24.04"]


def test_platform_args_come_from_build_args_when_given() -> None:
    text = "FROM --platform=$BUILDPLATFORM tools:${TARGETARCH}\n"
    assert images(text, TARGETARCH="arm64") == ["tools:arm64"]


# --------------------------------------------------------------------------- --from references


def test_copy_from_an_image() -> None:
    text = "FROM alpine\nCOPY --from=nginx:latest /etc/nginx/nginx.conf /nginx.conf\n"
    assert images(text) == ["alpine", "nginx:latest"]


def test_copy_from_stage_name_or_index_is_not_an_image() -> None:
    text = (
        "FROM golang AS build\n"
        "FROM alpine\n"
        "COPY --from=build /out /out\n"
        "COPY --from=0 /out /out2\n"
        "COPY --from=BUILD --chown=1:1 /x /y\n"
    )
    assert images(text) == ["golang", "alpine"]


def test_copy_from_uses_meta_args() -> None:
    text = "ARG TOOLS=busybox:1.36\nFROM alpine\nCOPY --from=${TOOLS} /bin/busybox /bin/\n"
    assert images(text) == ["alpine", "busybox:1.36"]


def test_run_mount_from_an_image() -> None:
    text = (
        "FROM golang AS build\n"
        "FROM alpine\n"
        "RUN --mount=type=bind,from=tools:1,source=/bin,target=/tools "
        "--mount=type=cache,target=/root/.cache,from=build true\n"
    )
    assert images(text) == ["golang", "alpine", "tools:1"]


def test_named_contexts_are_not_images() -> None:
    text = "FROM base\nCOPY --from=assets / /srv\nCOPY --from=other:1 / /\n"
    assert base_images(text, {}, contexts=["assets", "base"]) == ["other:1"]


# --------------------------------------------------------------------------- expand()


@pytest.mark.parametrize(("word", "expected"), [
    ("$A", "a"), ("${A}", "a"), ("x${A}y", "xay"), ("$A$B", "ab"), ("$UNSET", ""),
    ("${UNSET:-d}", "d"), ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""), ("${UNSET-d}", "d"),
    ("${A:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${EMPTY+alt}", "alt"), ("${UNSET+alt}", ""),
    ("${UNSET:-${A}-x}", "a-x"), ("\\$A", "$A"), ("'$A'", "$A"), ('"$A"', "a"), ("$", "$"),
    ("a$1", "a$1"),
])
def test_expand(word: str, expected: str) -> None:
    assert expand(word, {"A": "a", "B": "b", "EMPTY": ""}) == expected


def test_expand_required_variable() -> None:
    assert expand("${A:?must be set}", {"A": "a"}) == "a"
    with pytest.raises(ValueError, match="must be set"):
        expand("${A:?must be set}", {})


def test_expand_rejects_unterminated_braces() -> None:
    with pytest.raises(ValueError):
        expand("${A:-x", {})
