"""Benchmark: how long `immutdock drift` takes on an app of 10 containers, against the
plain CLI way of looking (`docker inspect` and `docker diff` of each container, one after
another).

Usage::

    .venv/bin/python bench/drift_speed.py [--runs 5] [--keep]

Needs the Docker engine and `busybox:latest` on it (`bash .ci/base-images`). One run:

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


def _app(root: Path, name: str, port: int) -> None:
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
        """))


def _timed(argv: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    return time.monotonic() - t0, proc


def _baseline(name: str) -> float:
    t0 = time.monotonic()
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.immutdock.app={name}"],
                         capture_output=True, text=True, check=True).stdout.split()
    for cid in ids:
        subprocess.run(["docker", "inspect", cid], capture_output=True, check=True)
        subprocess.run(["docker", "diff", cid], capture_output=True, check=True)
    return time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    name = f"benchdrift{uuid.uuid4().hex[:6]}"
    root = Path(tempfile.mkdtemp(prefix="immutdock-bench-")) / "app"
    _app(root, name, _free_port())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        release = subprocess.run([*IMMUTDOCK, "release"], cwd=root, capture_output=True, text=True, env=env)
        if release.returncode != 0:
            print(release.stderr, file=sys.stderr)
            return 1
        ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=io.immutdock.app={name}"],
                             capture_output=True, text=True, check=True).stdout.split()
        web = subprocess.run(["docker", "ps", "-q", "--filter", f"label=io.immutdock.app={name}",
                              "--filter", "label=io.immutdock.role=color"], capture_output=True, text=True,
                             check=True).stdout.split()
        subprocess.run(["docker", "exec", web[0], "sh", "-c", "echo edited > /www/index.html"], check=True)
        ours: list[float] = []
        theirs: list[float] = []
        findings = None
        for _ in range(args.runs):
            seconds, proc = _timed([*IMMUTDOCK, "drift", "--json"], root)
            if proc.returncode not in (0, 1):
                print(proc.stderr, file=sys.stderr)
                return 1
            findings = json.loads(proc.stdout)["drift"]
            ours.append(seconds)
            theirs.append(_baseline(name))
        print(f"app {name}: {len(ids)} running containers ({len(ids) - 1} of the app, the router)")
        print(f"immutdock drift found: {[(f['kind'], f['container']) for f in findings or []]}")
        print(f"{'':<34}{'median':>10}{'best':>10}")
        print(f"{'immutdock drift --json':<34}{statistics.median(ours):>9.2f}s{min(ours):>9.2f}s")
        print(f"{'docker inspect + diff, each':<34}{statistics.median(theirs):>9.2f}s{min(theirs):>9.2f}s")
        met = statistics.median(ours) < GOAL
        print(f"goal: [{'PASS' if met else 'FAIL'}] immutdock drift under {GOAL:g} s for an app of 10 containers "
              f"(median {statistics.median(ours):.2f} s over {args.runs} runs)")
        return 0 if met else 1
    finally:
        if not args.keep:
            cleanup(name)
            shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
