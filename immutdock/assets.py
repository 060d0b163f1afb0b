"""Files immutdock needs at run time: the compose templates (`compose/`) and the build contexts
of its helper images (`images/`). The top-level folders of the source are where they are
written; a wheel carries them inside the package (`immutdock/compose`, `immutdock/images`,
mapped in pyproject.toml), beside this module. (importlib.resources would find them there too,
at 5-10 ms of imports on every command: a folder is what compose and buildx need anyway.)"""

from __future__ import annotations

from pathlib import Path

from immutdock.errors import ImmutdockError


def folder(name: str) -> Path:
    """`compose`, `images` or `volumes`: inside the installed package, else the source checkout's."""
    packaged = Path(__file__).parent / name
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parent.parent / name  # immutdock/assets.py -> the checkout
    if source.is_dir():
        return source
    raise ImmutdockError(f"this installation of immutdock lacks its {name}/ folder",
                         "reinstall it from a wheel built by `pip wheel .` or from the source checkout")
