"""Where the app's compose files are, as compose picks them: -f, COMPOSE_FILE, or the folder's
`compose.yaml` (or its other names) with its override file."""

from __future__ import annotations

import os
from pathlib import Path

from immutdock.errors import ConfigError

COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_FILE_NAMES = ("compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml",
                       "docker-compose.override.yml")

__all__ = ["COMPOSE_FILE_NAMES", "OVERRIDE_FILE_NAMES", "compose_files", "find_compose_file"]


def find_compose_file(cwd: Path, explicit: Path | None = None) -> Path:
    if explicit is not None:
        path = (explicit if explicit.is_absolute() else cwd / explicit).absolute()
        if not path.is_file():  # a folder, or a device or pipe (read_compose reads a regular file only)
            raise ConfigError(str(explicit), "no such compose file" if not os.path.lexists(path) else
                              "is not a compose file (a folder, device or pipe)", "check the path given to -f")
        return path
    for name in COMPOSE_FILE_NAMES:
        if (cwd / name).is_file():
            return (cwd / name).absolute()
    raise ConfigError(str(cwd), "no compose file here",
                      f"run in the app's folder, pass -f FILE or set COMPOSE_FILE (looked for "
                      f"{', '.join(COMPOSE_FILE_NAMES)})")


def compose_files(cwd: Path, explicit: Path | None = None) -> list[Path]:
    """The files of the app, as compose picks them: `explicit` (-f); else the files of
    COMPOSE_FILE (separated by COMPOSE_PATH_SEPARATOR, ':' by default; relative to `cwd`); else
    the file found in `cwd`, merged with its override file."""
    listed = os.environ.get("COMPOSE_FILE", "") if explicit is None else ""
    if listed:
        names = [n for n in listed.split(os.environ.get("COMPOSE_PATH_SEPARATOR") or os.pathsep) if n.strip()]
        try:
            return [find_compose_file(cwd, Path(n)) for n in names]
        except ConfigError as exc:
            raise ConfigError("COMPOSE_FILE", exc.message, f"check the paths in COMPOSE_FILE ({listed})") from None
    path = find_compose_file(cwd, explicit)
    if explicit is not None:
        return [path]
    return [path] + [path.parent / n for n in OVERRIDE_FILE_NAMES if (path.parent / n).is_file()][:1]
