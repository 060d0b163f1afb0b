"""The pure core is pure at import: config, identity (hashing) and planning import nothing that
talks to an engine or a host. Each group is imported in a fresh interpreter, and what it
brought into sys.modules is checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GROUPS = {
    "config": ["config.compose_file", "config.validate", "config.settings", "config.model", "config.infer", "config.bounds",
               "config.projectfiles", "config.tls", "labels", "errors"],
    "identity": ["identity.buildhash", "identity.contexthash", "identity.dockerfile", "identity.dockerignore",
                 "identity.redact"],
    "plan": ["plan.release", "plan.render", "plan.state", "plan.imageplan", "plan.converge", "targets.ledger",
             "apply.steps"],
}
# Libraries that reach an engine or a host, and immutdock's own packages that do (every module
# of them: gateways, apply, targets, the command line), but for the records' pure helpers.
TALKERS = ["docker", "requests", "paramiko", "fabric", "invoke", "python_on_whales", "subprocess", "socket",
           "http.client"]
TALKING_PACKAGES = ["immutdock.gateways.", "immutdock.apply.", "immutdock.targets.", "immutdock.cli."]
ALLOWED = ["immutdock.targets.ledger"]  # Record and its parsing; its engine calls take the engine as an argument

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_the_pure_core_imports_nothing_that_talks_to_an_engine(group: str) -> None:
    probe = (f"import sys, json\n"
             f"before = set(sys.modules)\n"
             + "".join(f"import immutdock.{m}\n" for m in GROUPS[group])
             + f"own = {['immutdock.' + m for m in GROUPS[group]] + ALLOWED!r}\n"
             + f"talks = [m for m in sys.modules if m not in before and m not in own and (m in {TALKERS!r}\n"
             + f"         or m.startswith(tuple({TALKING_PACKAGES!r})))]\n"
             + "print(json.dumps(sorted(talks)))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout) == [], f"importing the {group} modules brought in {out.stdout.strip()}"
