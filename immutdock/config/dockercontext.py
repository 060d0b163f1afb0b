"""The engine the docker CLI's current context names, as `docker` and compose would use it:
DOCKER_HOST when set; else the context DOCKER_CONTEXT names, else the `currentContext` of the
CLI's config (DOCKER_CONFIG, or ~/.docker); "default" (or none) is the local socket."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

from immutdock.errors import ConfigError


def context_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables that point the engine clients at the current context's engine (DOCKER_HOST,
    and DOCKER_CERT_PATH and DOCKER_TLS_VERIFY for a context with TLS material); none when
    DOCKER_HOST is set or the context is the default one."""
    if env.get("DOCKER_HOST"):
        return {}
    folder = Path(env.get("DOCKER_CONFIG") or Path(env.get("HOME") or Path.home()) / ".docker")
    name, where = env.get("DOCKER_CONTEXT"), "DOCKER_CONTEXT"
    if not name:
        name, where = _current(folder / "config.json"), f"currentContext in {folder / 'config.json'}"
    if not name or name == "default":
        return {}
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = folder / "contexts" / "meta" / digest / "meta.json"
    try:
        endpoint = json.loads(meta.read_text(encoding="utf-8"))["Endpoints"]["docker"]
        host = str(endpoint["Host"])
    except FileNotFoundError:
        raise ConfigError(where, f"the docker context {name!r} does not exist",
                          "`docker context ls` lists the contexts; `docker context use default` is the local engine") \
            from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(where, f"the docker context {name!r} cannot be read ({exc})",
                          f"check {meta}, or recreate the context") from None
    found = {"DOCKER_HOST": host}
    tls = folder / "contexts" / "tls" / digest / "docker"
    if tls.is_dir():
        found["DOCKER_CERT_PATH"] = str(tls)
        if not endpoint.get("SkipTLSVerify"):
            found["DOCKER_TLS_VERIFY"] = "1"
    return found


def _current(config: Path) -> str | None:
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("currentContext") or None
    except (OSError, ValueError, AttributeError):
        return None  # no config, or one the CLI would not read either: the default context
