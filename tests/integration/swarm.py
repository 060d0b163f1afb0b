"""A Docker Swarm made of test hosts (hosts.py): the first host inits it, the others join as
managers, so every node can answer for the cluster. One Swarm of three nodes is formed per
run (the `swarm` fixture of conftest.py) and shared by the tests that need one; each test uses
its own app name and removes what it made. The engine that runs the rest of the suite never
joins a swarm."""

from __future__ import annotations

import json
import os
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator

from immutdock.config.model import Target as Policy
from immutdock.targets.base import Target
from immutdock.targets.hosts import close_hosts, open_hosts

from .hosts import SshHost, SshHosts


class SwarmHosts(SshHosts):
    def __init__(self, count: int = 3) -> None:
        super().__init__(count)
        try:
            self._form()
        except BaseException:
            self.close()
            raise

    def _form(self) -> None:
        first, *others = self.hosts
        address = first.sh("hostname -i").stdout.split()[0]
        first.docker("swarm", "init", "--advertise-addr", address)
        token = first.docker("swarm", "join-token", "-q", "manager").stdout.strip()
        for host in others:
            host.docker("swarm", "join", "--token", token, f"{address}:2377", timeout=120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            nodes = [json.loads(line) for line in first.docker("node", "ls", "--format", "{{json .}}").stdout.split("\n")
                     if line.strip()]
            if len(nodes) == len(self.hosts) and all(n["Status"] == "Ready" for n in nodes):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the test swarm did not form: {nodes}")

    @property
    def managers(self) -> list[SshHost]:
        return self.hosts

    def load(self, image: str) -> None:
        """`image` (from this engine) on every node, once per run."""
        loaded = self.__dict__.setdefault("_loaded", set())
        if image in loaded:
            return
        saved = subprocess.run(["docker", "save", image], capture_output=True, check=True, timeout=300).stdout
        for host in self.hosts:
            subprocess.run(["docker", "exec", "-i", host.container, "docker", "load"], input=saved,
                           capture_output=True, check=True, timeout=300)
        loaded.add(image)

    def tag_image(self, image: str, as_: str) -> None:
        for host in self.hosts:
            host.docker("tag", image, as_)

    def remove_services(self, prefix: str) -> None:
        first = self.hosts[0]
        found = first.docker("service", "ls", "-q", "--filter", f"name={prefix}").stdout.split()
        if found:
            first.docker("service", "rm", *found, check=False)

    @contextmanager
    def opened(self, *hosts: SshHost) -> Iterator[list[Target]]:
        """The hosts as immutdock opens them (over SSH, their keys known)."""
        old_home = os.environ.get("HOME")
        os.environ["HOME"] = str(self.home)
        try:
            targets = open_hosts(Policy(name="swarm", hosts=tuple(h.url for h in hosts)), self.key, False)
        finally:
            os.environ["HOME"] = old_home or ""
        try:
            yield targets
        finally:
            close_hosts(targets)

    def remove_app(self, app: str, wait: int = 30) -> None:
        """Everything of `app` on the swarm: its stacks, then (once their tasks' containers are
        gone from every node, `wait` seconds at most) its volumes, edge network, configs
        (records, lock) and secrets."""
        first = self.hosts[0]
        for role in ("blue", "green", "state", "router"):
            first.docker("stack", "rm", f"{app}-{role}", check=False)
        for host in self.hosts:
            host.sh(f"for i in $(seq {wait * 2}); do [ -z \"$(docker ps -aq --filter label=io.immutdock.app={app})\" ] "
                    "&& break; sleep 0.5; done; "
                    f"docker volume ls -q --filter label=io.immutdock.app={app} | xargs -r docker volume rm "
                    f">/dev/null 2>&1; docker volume rm {app}_data >/dev/null 2>&1; "
                    f"docker image ls -q --filter label=io.immutdock.app={app} | xargs -r docker rmi -f "
                    ">/dev/null 2>&1; true")
        first.docker("network", "rm", f"{app}_immutdock", check=False)
        self.remove_configs(app)
        secrets = [n for n in first.docker("secret", "ls", "--format", "{{.Name}}").stdout.split() if n.startswith(app)]
        if secrets:
            first.docker("secret", "rm", *secrets, check=False)
        from .support import cleanup

        cleanup(app)  # what was built for it on this machine

    def remove_configs(self, app: str) -> None:
        first = self.hosts[0]
        found = first.docker("config", "ls", "-q", "--filter", f"label=io.immutdock.app={app}").stdout.split()
        if found:
            first.docker("config", "rm", *found, check=False)
