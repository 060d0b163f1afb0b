"""Benchmark: how long `immutdock drift` takes on an app of 10 containers, against the
plain CLI way of looking (`docker inspect` and `docker diff` of each container, one after
another).

Usage::

    .venv/bin/python bench/drift_speed.py [--runs 5] [--keep] [--ssh]

Needs the Docker engine and `busybox:latest` on it (`bash .ci/base-images`). With --ssh the app
is released to a test host instead (sshd and its own dockerd, the tests' tests/hosts image) and
both sides read it over SSH: `immutdock drift --target bench`, and the baseline's docker
commands each run as `ssh HOST docker ...` (one SSH connection per command, as a script does).
One run:

1. A busybox app under a unique name: `web` with 9 replicas behind the router and a stateful
   `db`: 10 containers of the app (and the router). It is released once (not timed).
2. A file is edited inside one web container (so both sides have something to find).
3. `--runs` times each, interleaved: `immutdock drift --json` (the whole command: Python
   start-up, reading the compose file, the records, every container and its diff), and the
   baseline: `docker ps` of the app's containers, then `docker inspect` and `docker diff` of
   each, one after another (what a script would do; it compares nothing).

Prints the median and best wall time of each and the goal: immutdock under 2 s.
Everything the app made is removed unless --keep."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.integration.support import cleanup  # noqa: E402  (the tests' clean-up by label)

IMMUTDOCK = [sys.executable, "-m", "immutdock"]
GOAL = 2.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _app(root: Path, name: str, port: int, target: str = "") -> None:
    (root / "web").mkdir(parents=True)
    (root / "web" / "Dockerfile").write_text('FROM busybox:latest\nCOPY . /www\nCMD ["httpd", "-f", "-p", "8000", "-h", "/www"]\n')
    (root / "web" / "index.html").write_text("ok\n")
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        services:
          web:
            build: ./web
            init: true
            deploy: {{replicas: 9}}
          db:
            image: busybox:latest
            init: true
            command: ["sh", "-c", "while true; do date > /data/now; sleep 1; done"]
            volumes: ["data:/data"]
        volumes:
          data: {{}}
        x-immutdock:
          router:
            service: web
            port: 8000
            publish: "127.0.0.1:{port}"
          stateful: [db]
        """) + target)


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
    return time.monotonic() - t0, proc


def _baseline(name: str, docker: list[str]) -> float:
    t0 = time.monotonic()
    ids = subprocess.run([*docker, "ps", "-aq", "--filter", f"label=io.immutdock.app={name}"],
                         capture_output=True, text=True, check=True).stdout.split()
    for cid in ids:
        subprocess.run([*docker, "inspect", cid], capture_output=True, check=True)
        subprocess.run([*docker, "diff", cid], capture_output=True, check=True)
    return time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--ssh", action="store_true", help="release to a test host and read it over SSH")
    args = parser.parse_args()

    name = f"benchdrift{uuid.uuid4().hex[:6]}"
    root = Path(tempfile.mkdtemp(prefix="immutdock-bench-")) / "app"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    hosts = None
    docker, target = ["docker"], []
    if args.ssh:
        from tests.integration.hosts import SshHosts

        hosts = SshHosts(1)
        host = hosts.hosts[0]
        env.update(hosts.env)
        docker = ["ssh", "-F", f"{hosts.home}/.ssh/config", "-o", f"UserKnownHostsFile={hosts.known_hosts}",
                  host.alias, "docker"]
        target = ["--target", "bench"]
    _app(root, name, _free_port(), f"  targets:\n    bench: {{hosts: [{hosts.hosts[0].alias}]}}\n" if hosts else "")
    try:
        release = subprocess.run([*IMMUTDOCK, "release", *target], cwd=root, capture_output=True, text=True, env=env)
        if release.returncode != 0:
            print(release.stderr, file=sys.stderr)
            return 1
        ids = subprocess.run([*docker, "ps", "-q", "--filter", f"label=io.immutdock.app={name}"],
                             capture_output=True, text=True, check=True, env=env).stdout.split()
        web = subprocess.run([*docker, "ps", "-q", "--filter", f"label=io.immutdock.app={name}",
                              "--filter", "label=io.immutdock.role=color"], capture_output=True, text=True,
                             check=True, env=env).stdout.split()
        edit = "echo edited > /www/index.html"  # ssh hands its arguments to the host's shell: quoted
        subprocess.run([*docker, "exec", web[0], "sh", "-c", shlex.quote(edit) if hosts else edit], check=True,
                       env=env)
        ours: list[float] = []
        theirs: list[float] = []
        findings = None
        for _ in range(args.runs):
            seconds, proc = _timed([*IMMUTDOCK, "drift", *target, "--json"], root, env)
            if proc.returncode not in (0, 1):
                print(proc.stderr, file=sys.stderr)
                return 1
            data = json.loads(proc.stdout)
            findings = data["hosts"][0]["drift"] if hosts else data["drift"]
            ours.append(seconds)
            theirs.append(_baseline(name, docker))
        where = f"on test host {hosts.hosts[0].alias} over SSH" if hosts else "on the local engine"
        print(f"app {name} {where}: {len(ids)} running containers ({len(ids) - 1} of the app, the router)")
        print(f"immutdock drift found: {[(f['kind'], f['container']) for f in findings or []]}")
        print(f"{'':<40}{'median':>10}{'best':>10}")
        ours_label = "immutdock drift --target bench --json" if hosts else "immutdock drift --json"
        theirs_label = "ssh docker inspect + diff, each" if hosts else "docker inspect + diff, each"
        print(f"{ours_label:<40}{statistics.median(ours):>9.2f}s{min(ours):>9.2f}s")
        print(f"{theirs_label:<40}{statistics.median(theirs):>9.2f}s{min(theirs):>9.2f}s")
        met = statistics.median(ours) < GOAL
        print(f"goal: [{'PASS' if met else 'FAIL'}] immutdock drift under {GOAL:g} s for an app of 10 containers "
              f"{where} (median {statistics.median(ours):.2f} s over {args.runs} runs)")
        return 0 if met else 1
    finally:
        if not args.keep:
            cleanup(name)
            if hosts is not None:
                hosts.close()
            shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
