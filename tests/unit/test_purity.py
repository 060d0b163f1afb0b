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
    "config": ["config.compose_file", "config.settings", "config.model", "config.infer", "config.bounds",
               "config.projectfiles", "config.tls", "labels", "errors"],
    "identity": ["identity.buildhash", "identity.contexthash", "identity.dockerfile", "identity.dockerignore",
                 "identity.redact"],
    "plan": ["plan.release", "plan.render", "plan.state", "plan.imageplan", "targets.ledger", "apply.steps"],
}
# Libraries that reach an engine or a host, and immutdock's own gateways to them.
TALKERS = ["docker", "requests", "paramiko", "fabric", "invoke", "python_on_whales", "subprocess", "socket",
           "http.client", "immutdock.gateways.engine", "immutdock.gateways.compose", "immutdock.gateways.ssh", "immutdock.gateways.wire",
           "immutdock.gateways.docker_exec", "immutdock.gateways.spawn", "immutdock.apply.router", "immutdock.targets.observe", "immutdock.apply.build"]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_the_pure_core_imports_nothing_that_talks_to_an_engine(group: str) -> None:
    probe = (f"import sys, json\n"
             f"before = set(sys.modules)\n"
             + "".join(f"import immutdock.{m}\n" for m in GROUPS[group])
             + f"print(json.dumps(sorted(m for m in {TALKERS!r} if m in sys.modules and m not in before)))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout) == [], f"importing the {group} modules brought in {out.stdout.strip()}"
