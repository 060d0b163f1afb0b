"""Benchmark: releasing to SSH hosts, 1 and 3 at once, against `docker save IMG | ssh HOST
docker load` of the whole image per host, from one run.

Usage::

    .venv/bin/python bench/ssh_ship.py [--keep]

Needs the Docker engine (``bash .ci/setup``) and Debian's package mirror for the first build of
the test-host image (tests/hosts/Dockerfile, the one the tests use). One run:

1. Four fresh test hosts (sshd + their own dockerd, no images): one for the 1-host target,
   three for the 3-host target (``parallel: 3``). A small Python app (FROM debian:bookworm-slim,
   one ``app.py``) is built once here with ``immutdock build`` and released once to the local
   engine, which builds the router's image here (neither timed: both targets then release the
   same, already built images).
2. Timed, each a fresh ``immutdock release --json`` process: to the 1-host target; to the
   3-host target; to the 3-host target again with nothing changed; then, after a one-line change
   of ``app.py`` (built, not timed), to the local engine and to the 3-host target. Bytes are
   immutdock's own count of compressed bytes sent (``bytes_shipped``), which the tests check
   against the layers' compressed sizes.
   Each release's phases, per host, come from its ``--json`` (``timings``); the CPU each used, from
   this script's children (immutdock with its compose, buildx and ssh) and from each test host's
   cgroup (its sshd, dockerd and containerd; not the containers its engine runs).
3. The naive side, the same app image after the change: ``docker save IMG | ssh HOST docker
   load`` to one host, then to three hosts one after the other (what a script does), timed;
   bytes are the size of the ``docker save`` archive, sent uncompressed per host.

Goals: 3 hosts take less than 1.5 times one host; an unchanged re-release ships 0 bytes; the
code change ships less than 5 % of what whole-image ``docker save`` ships (to the same hosts);
the code change to 3 hosts takes less than twice the same change released to the local engine.
The app publishes port 8080 on this machine for its local release: it must be free.
The first releases also ship the router image (immutdock's, built here), which the naive side
does not have to: they are reported, not compared with the naive side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.hosts import SshHosts  # noqa: E402  (the tests' own test hosts)

APP = """\
import socket
import threading

VERSION = "v1"


def answer(conn):
    with conn:
        conn.recv(65536)
        body = VERSION.encode()
        conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(body), body))


server = socket.create_server(("", 8000), reuse_port=True)
while True:
    threading.Thread(target=answer, args=(server.accept()[0],), daemon=True).start()
"""
DOCKERFILE = """\
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3-minimal && rm -rf /var/lib/apt/lists/*
COPY app.py /app/app.py
CMD ["python3", "/app/app.py"]
"""


def immutdock(cwd: Path, hosts: SshHosts, *args: str) -> tuple[float, dict]:
    t = time.monotonic()
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "immutdock"), *args], cwd=cwd, capture_output=True,
                          text=True, env={**_env(), **hosts.env})
    took = time.monotonic() - t
    if proc.returncode != 0:
        raise SystemExit(f"immutdock {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return took, json.loads(proc.stdout) if proc.stdout.strip() else {}


def _env() -> dict[str, str]:
    return dict(os.environ)


def host_cpu(container: str) -> float | None:
    """CPU seconds a test host's container has used so far (its sshd, dockerd, containerd: not the
    containers its own engine runs, which have cgroups of their own), from its cgroup; None where
    that cannot be read."""
    cid = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", container], capture_output=True,
                         text=True).stdout.strip()
    try:
        return int(Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage").read_text()) / 1e9  # cgroup v1
    except (OSError, ValueError):
        pass
    try:
        stat = Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat").read_text()  # cgroup v2
        return int(stat.split("usage_usec", 1)[1].split()[0]) / 1e6
    except (OSError, ValueError, IndexError):
        return None


def own_cpu() -> float:
    """CPU seconds of this script's finished children (each immutdock, its compose, buildx, ssh)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def cpu_row(label: str, hosts: list, run: Callable[[], Any]) -> tuple[tuple[str, float, list[float | None]], Any]:
    """run(), and the CPU it cost: immutdock's process with its children, and each of `hosts`."""
    before, mine = [host_cpu(h.container) for h in hosts], own_cpu()
    result = run()
    after = [host_cpu(h.container) for h in hosts]
    return (label, own_cpu() - mine, [b if b is None or a is None else a - b for a, b in zip(after, before)]), result


def naive(image: str, hosts: SshHosts, which: list[int]) -> tuple[float, int]:
    """`docker save IMAGE | ssh HOST docker load`, host after host; (seconds, bytes per host)."""
    size = int(subprocess.run(f"docker save {image} | wc -c", shell=True, capture_output=True, text=True,
                              check=True).stdout)
    t = time.monotonic()
    for i in which:
        h = hosts.hosts[i]
        subprocess.run(f"docker save {image} | ssh -F {hosts.home}/.ssh/config "
                       f"-o UserKnownHostsFile={hosts.known_hosts} {h.alias} docker load -q",
                       shell=True, check=True, capture_output=True)
    return time.monotonic() - t, size


PHASES = ("observe", "delivery", "plan", "shared", "router", "start", "gate", "switch", "settle", "drain", "retire",
          "total")


def print_phases(phases: list[tuple[str, dict]]) -> None:
    """Each release's phases (s): the steps done once (`plan` ... `ship`), then each host's."""
    print(f"\nphases (s){'':<38}" + "".join(f"{p:>8}" for p in PHASES))
    for label, out in phases:
        once = out.get("timings") or {}
        print(f"{label}: once: " + ", ".join(f"{k} {v:.2f}" for k, v in once.items() if k in ("plan", "build", "ship"))
              if "hosts" in out else label)
        for h in out.get("hosts") or [{"host": "local", "timings": once}]:
            t = h.get("timings") or {}
            print(f"  {h['host'][-44:]:<46}" + "".join(f"{t[p]:>8.2f}" if p in t else f"{'-':>8}" for p in PHASES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the hosts and the app's folder")
    args = parser.parse_args()
    name = f"bench{uuid.uuid4().hex[:6]}"
    root = Path(tempfile.mkdtemp(prefix="immutdock-bench-"))
    print("making 4 test hosts ...", file=sys.stderr)
    hosts = SshHosts(4)
    try:
        a = hosts.hosts
        (root / "web").mkdir()
        (root / "web" / "Dockerfile").write_text(DOCKERFILE)
        (root / "web" / "app.py").write_text(APP)
        (root / "compose.yaml").write_text(textwrap.dedent(f"""\
            name: {name}
            services:
              web:
                build: ./web
                init: true
                ports: ["8080:8000"]
            x-immutdock:
              router:
                health: {{timeout: 60}}
              targets:
                one: {{hosts: [{a[0].alias}]}}
                three: {{hosts: [{a[1].alias}, {a[2].alias}, {a[3].alias}], parallel: 3}}
            """))
        print("building the app once (not timed) ...", file=sys.stderr)
        immutdock(root, hosts, "build", "--json")
        if subprocess.run(["sh", "-c", "ss -ltn | grep -q ':8080 '"]).returncode == 0:
            raise SystemExit("port 8080 is in use on this machine: the app's local release needs it")
        print("the local engine's first release, which builds the router's image (not timed) ...", file=sys.stderr)
        immutdock(root, hosts, "release", "--json")
        rows: list[tuple[str, float, int, list[str]]] = []
        phases: list[tuple[str, dict]] = []
        cpu: list[tuple[str, float, list[float | None]]] = []
        for label, target in (("first release, 1 host", "one"), ("first release, 3 hosts", "three"),
                              ("re-release, unchanged, 3 hosts", "three")):
            print(f"{label} ...", file=sys.stderr)
            used, (took, out) = cpu_row(label, a[:1] if target == "one" else a[1:], lambda t=target: immutdock(
                root, hosts, "release", "--target", t, "--json"))
            cpu.append(used)
            rows.append((label, took, out["bytes_shipped"], [h["outcome"] for h in out["hosts"]]))
            phases.append((label, out))
        (root / "web" / "app.py").write_text(APP.replace('VERSION = "v1"', 'VERSION = "v2"'))
        immutdock(root, hosts, "build", "--json")
        print("one-line code change, local engine ...", file=sys.stderr)
        local, out = immutdock(root, hosts, "release", "--json")
        phases.append(("code change, local engine", out))
        print("one-line code change, 3 hosts ...", file=sys.stderr)
        used, (took, out) = cpu_row("code change, 3 hosts", a[1:], lambda: immutdock(
            root, hosts, "release", "--target", "three", "--json"))
        cpu.append(used)
        phases.append(("code change, 3 hosts", out))
        rows.append(("code change, 3 hosts", took, out["bytes_shipped"], [h["outcome"] for h in out["hosts"]]))
        for h in a[1:]:
            served = subprocess.run(["curl", "-s", h.app_url], capture_output=True, text=True).stdout
            assert served == "v2", f"{h.alias} serves {served!r}"
        image = immutdock(root, hosts, "status", "--target", "three", "--json")[1]["hosts"][0]["images"]["web"]
        print("naive: docker save | ssh docker load ...", file=sys.stderr)
        naive1, size = naive(image, hosts, [0])
        naive3, _ = naive(image, hosts, [1, 2, 3])

        print(f"\n{'step':<34} {'immutdock s':>12} {'bytes sent':>14}   {'naive s':>9} {'bytes sent':>14}")
        naive_for = {"first release, 1 host": (naive1, size), "code change, 3 hosts": (naive3, 3 * size)}
        for label, took, sent, outcomes in rows:
            n = naive_for.get(label)
            print(f"{label:<34} {took:>12.1f} {sent:>14,}   " + (f"{n[0]:>9.1f} {n[1]:>14,}" if n else
                                                                 f"{'-':>9} {'-':>14}") + f"   {outcomes}")
        print(f"{'naive, 3 hosts one after another':<34} {'':>12} {'':>14}   {naive3:>9.1f} {3 * size:>14,}")
        print(f"{'code change, local engine':<34} {local:>12.1f}")
        print_phases(phases)
        print("\nCPU (s): immutdock (its process, compose, buildx, ssh), each host's engine (sshd, dockerd, containerd)")
        for label, mine, theirs in cpu:
            print(f"  {label:<34} immutdock {mine:>5.1f}   hosts " + "  ".join(
                f"{c:.1f}" if c is not None else "-" for c in theirs))
        one, three = rows[0][1], rows[1][1]
        goals = [("3 hosts take < 1.5x one host", three < 1.5 * one, f"{three / one:.2f}x"),
                 ("unchanged re-release ships 0 bytes", rows[2][2] == 0, f"{rows[2][2]} bytes"),
                 ("code change ships < 5% of docker save", rows[3][2] < 0.05 * 3 * size,
                  f"{100 * rows[3][2] / (3 * size):.3f}%"),
                 ("code change to 3 hosts < 2x the local engine", rows[3][1] < 2 * local,
                  f"{rows[3][1]:.1f} s against {local:.1f} s: {rows[3][1] / local:.2f}x")]
        print()
        for what, ok, figure in goals:
            print(f"goal {what}: {'met' if ok else 'NOT met'} ({figure})")
        sys.exit(0 if all(ok for _w, ok, _f in goals) else 1)
    finally:
        if not args.keep:
            subprocess.run([str(REPO / ".venv" / "bin" / "immutdock"), "down", "--yes"], cwd=root, capture_output=True,
                           env={**_env(), **hosts.env})
            hosts.close()
            subprocess.run(["docker", "image", "rm", "-f", *subprocess.run(
                ["docker", "images", "-q", "--filter", f"label=io.immutdock.app={name}"], capture_output=True,
                text=True).stdout.split()], capture_output=True)
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
