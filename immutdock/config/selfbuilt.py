"""What a service's own Dockerfile and command show about it: a self-built Redis, PostgreSQL or
MySQL is a database like the upstream image is (read from the files; no engine)."""

from __future__ import annotations

import os
import re
import shlex
from typing import Any, Mapping

from immutdock.identity.dockerfile import expand, instructions

# Programs that keep data: a command or entrypoint that starts one is a database's.
DATABASE_PROGRAMS = frozenset({
    "redis-server", "valkey-server", "keydb-server", "postgres", "postgresql", "pg_ctl", "mysqld", "mariadbd",
    "mysqld_safe", "mongod", "memcached", "rabbitmq-server", "etcd", "influxd", "clickhouse-server",
    "cassandra", "couchdb", "elasticsearch", "opensearch", "minio", "nats-server", "zookeeper-server-start.sh",
    "kafka-server-start.sh", "meilisearch", "qdrant", "typesense-server", "dragonfly", "neo4j",
})
_LIMIT = 1 << 20  # a Dockerfile read for this: its first MiB


def _words(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError:
            return value.split()
    return []


def program(command: Any) -> str | None:
    """The database program a command or entrypoint starts (through `sh -c`, `exec` or a path)."""
    words = _words(command)
    if len(words) >= 3 and os.path.basename(words[0]) in ("sh", "bash", "ash", "dash") and words[1] == "-c":
        words = _words(words[2])
    for word in words[:3]:
        name = os.path.basename(word)
        if name in DATABASE_PROGRAMS:
            return name
        if name not in ("exec", "gosu", "su-exec", "tini", "dumb-init", "--", "/sbin/tini", "docker-entrypoint.sh"):
            return None
    return None


def _dockerfile(svc: Mapping[str, Any]) -> str | None:
    build = svc.get("build")
    if not isinstance(build, Mapping):
        return None
    context = str(build.get("context") or ".")
    path = os.path.join(context, str(build.get("dockerfile") or "Dockerfile"))
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > _LIMIT:
            return None
        with open(path, "rb") as f:
            return f.read(_LIMIT).decode("utf-8", "replace")
    except OSError:
        return None


def final_stage(svc: Mapping[str, Any]) -> tuple[str | None, list[str], list[int]]:
    """(the image the built stage (build.target, else the last) is FROM, following earlier
    stages; the program its CMD or ENTRYPOINT starts, if any; the ports it EXPOSEs) of a
    service's own Dockerfile."""
    text = _dockerfile(svc)
    if text is None:
        return None, [], []
    build = svc.get("build") or {}
    args = {str(k): str(v) for k, v in (build.get("args") or {}).items() if v is not None}
    stages: dict[str, tuple[str, list[str], list[int]]] = {}
    base: str | None = None
    commands: list[str] = []
    ports: list[int] = []
    for ins in instructions(text):
        if ins.keyword == "ARG" and base is None:
            key, _, default = ins.args.strip().partition("=")
            args.setdefault(key.strip(), default.strip().strip("\"'"))
        elif ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            ref = expand(words[0], args) if words else ""
            base, commands, ports = stages.get(ref.lower(), (ref, [], []))
            commands, ports = list(commands), list(ports)
            if len(words) >= 3 and words[1].lower() == "as":
                stages[words[2].lower()] = (base, commands, ports)
        elif ins.keyword in ("CMD", "ENTRYPOINT"):
            found = program(_json_or_words(ins.args))
            commands[:] = [found] if found else []
        elif ins.keyword == "EXPOSE":
            ports += [int(m) for m in re.findall(r"\b(\d{1,5})(?:/tcp)?\b", ins.args)]
    target = str(build.get("target") or "").lower()
    if target in stages:
        return stages[target]
    return base, commands, ports


def _json_or_words(args: str) -> Any:
    import json

    text = args.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text
