"""Rooms a newcomer reads in one sitting: no module of the package over 400 lines, no
function over 60 (a rendered template may be longer: it reads top to bottom as the file it
renders)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "immutdock"
TEMPLATES = {("plan/haproxy.py", "haproxy_config")}  # the HAProxy configuration, line by line


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}, long


def test_no_function_is_over_60_lines_but_templates() -> None:
    long = {}
    for p in PACKAGE.rglob("*.py"):
        where = str(p.relative_to(PACKAGE))
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (where, node.name) not in TEMPLATES:
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long[f"{where}:{node.name}"] = length
    assert long == {}, long


def test_the_deployers_mixins_share_no_method_name() -> None:
    """A method of one mixin of Deployer that another defines too is shadowed without a word."""
    from immutdock.apply.release import Deployer

    seen: dict[str, str] = {}
    clashes = []
    for part in Deployer.__mro__[1:]:
        if part.__module__.startswith("immutdock.apply.release_"):
            for name in vars(part):
                if callable(vars(part)[name]) and not name.startswith("__"):
                    if name in seen:
                        clashes.append(f"{name}: {seen[name]} and {part.__name__}")
                    seen[name] = part.__name__
    assert clashes == []
