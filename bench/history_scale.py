"""Benchmark: `immutdock status` and a no-op `immutdock release` with a long release history,
against `docker compose up -d --build` on the same app, from one run.

Usage::

    .venv/bin/python bench/history_scale.py [--records 500] [--runs 7] [--keep]

Needs a running Docker engine with compose v2 and ``busybox:latest`` (``bash .ci/base-images``).
immutdock's modules are byte-compiled first (``compileall``), as ``pip install`` leaves them.
One run, in a temp dir:

1. A small app (``web``: busybox httpd, built from a Dockerfile; ``db``: stateful, built, with a
   named volume) is released once with ``immutdock release`` (r1). A copy of it without the
   ``x-immutdock`` block and with ``web`` published directly is started with ``docker compose
   -p NAME up -d --build --wait``: the naive side.
2. Timed, ``--runs`` times each and interleaved: ``immutdock status``, ``immutdock release``
   (a no-op: nothing changed) and ``docker compose -p NAME up -d --build`` (everything built,
   nothing to recreate), each a fresh process from the app's folder, as a user types them.
3. The history is filled to ``--records`` records through immutdock's own ledger
   (``immutdock.targets.ledger.write``): copies of r1's record (its labels, images, salt and redacted
   model), numbered r2, r3, ... As ``prune`` leaves a history, every record but the newest 5
   is compacted (no model). Step 2 again.
4. The same number of records, none compacted (a history ``prune`` never ran on). Step 2 again.

It prints the median and min of each command per history size and the ratio of immutdock's
medians to compose's. Goal: with ``--records`` records (compacted), ``status`` and the no-op
``release`` take no longer than compose's ``up -d --build`` (ratio <= 1.00). Everything is
removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMMUTDOCK = REPO / ".venv" / "bin" / "immutdock"
sys.path.insert(0, str(REPO))

from immutdock.targets import ledger  # noqa: E402
from immutdock.gateways.engine import Engine  # noqa: E402

WEB_DOCKERFILE = 'FROM busybox:latest\nCOPY . /www\nCMD ["httpd", "-f", "-p", "8000", "-h", "/www"]\n'
DB_DOCKERFILE = 'FROM busybox:latest\nCMD ["sh", "-c", "mkdir -p /data && exec httpd -f -p 9000 -h /data"]\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_app(root: Path, name: str, port: int, naive: bool) -> None:
    (root / "web").mkdir(parents=True)
    (root / "db").mkdir()
    (root / "web" / "Dockerfile").write_text(WEB_DOCKERFILE)
    (root / "web" / "index.html").write_text("v1\n")
    (root / "db" / "Dockerfile").write_text(DB_DOCKERFILE)
    web_extra = f'    ports: ["127.0.0.1:{port}:8000"]\n' if naive else ""
    block = "" if naive else textwrap.dedent(f"""\
        x-immutdock:
          router: {{service: web, port: 8000, publish: "127.0.0.1:{port}", health: {{path: /}}}}
          stateful: [db]
        """)
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        services:
          web:
            build: ./web
            environment: {{MODE: production, API_TOKEN: bench-token}}
        """) + web_extra + textwrap.dedent("""\
          db:
            build: ./db
            volumes: ["data:/data"]
        volumes:
          data: {}
        """) + block)


def timed(argv: list[str], cwd: Path) -> float:
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return took


def measure(app_dir: Path, naive_dir: Path, naive: str, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"immutdock status": [], "immutdock release (no-op)": [],
                                   "docker compose up -d --build": []}
    for _ in range(runs):
        out["immutdock status"].append(timed([str(IMMUTDOCK), "status"], app_dir))
        out["immutdock release (no-op)"].append(timed([str(IMMUTDOCK), "release"], app_dir))
        out["docker compose up -d --build"].append(
            timed(["docker", "compose", "-p", naive, "up", "-d", "--build"], naive_dir))
    return out


def fill(engine: Engine, app: str, records: int, compact_all_but: int | None) -> None:
    """Records r2..r<records>, copies of r1's (through the ledger), compacted but the newest few."""
    for rec in ledger.history(engine, app):
        if rec.number > 1:
            engine.remove_volume(rec.volume)
    first = ledger.history(engine, app)[0]
    for number in range(2, records + 1):
        keep_model = compact_all_but is None or number > records - compact_all_but
        ledger.write(engine, app, dataclasses.replace(first, number=number, key="", volume="",
                                                      packed=first.packed if keep_model else ""))


def cleanup(app: str, naive: str, naive_dir: Path) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from integration.support import cleanup as remove_app  # noqa: E402

    remove_app(app)
    subprocess.run(["docker", "compose", "-p", naive, "down", "-v", "--rmi", "local", "--timeout", "5"],
                   cwd=naive_dir, capture_output=True, timeout=300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="leave the apps running")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    app, naive = f"histbench{tag}", f"histnaive{tag}"
    tmp = Path(tempfile.mkdtemp(prefix="immutdock-bench-"))
    app_dir, naive_dir = tmp / "app", tmp / "naive"
    results: list[tuple[str, dict[str, list[float]]]] = []
    try:
        # pip compiles a package's modules when it installs it; the editable install of a
        # checkout (and PYTHONDONTWRITEBYTECODE) would leave them to be compiled on every run.
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "immutdock")], check=True)
        write_app(app_dir, app, free_port(), naive=False)
        write_app(naive_dir, naive, free_port(), naive=True)
        print(f"releasing {app} (r1) and starting {naive} with compose ...", file=sys.stderr)
        timed([str(IMMUTDOCK), "release"], app_dir)
        timed(["docker", "compose", "-p", naive, "up", "-d", "--build", "--wait"], naive_dir)
        engine = Engine()
        results.append(("1 record", measure(app_dir, naive_dir, naive, args.runs)))
        for label, compact in ((f"{args.records} records, all but 5 compacted", 5),
                               (f"{args.records} records, none compacted", None)):
            print(f"filling the history: {label} ...", file=sys.stderr)
            fill(engine, app, args.records, compact)
            assert len(ledger.history(engine, app)) == args.records
            results.append((label, measure(app_dir, naive_dir, naive, args.runs)))
    finally:
        if not args.keep:
            cleanup(app, naive, naive_dir)
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{'history':<36} {'command':<30} {'median':>8} {'min':>8}   ratio to compose (median)")
    goal_met = True
    for label, data in results:
        compose = statistics.median(data["docker compose up -d --build"])
        for command, times in data.items():
            med = statistics.median(times)
            ratio = "" if command.startswith("docker") else f"{med / compose:.2f}"
            print(f"{label:<36} {command:<30} {med:>7.2f}s {min(times):>7.2f}s   {ratio}")
            if "compacted" in label and "none" not in label and command.startswith("immutdock") and med > compose:
                goal_met = False
    print(f"\ngoal (status and no-op release no slower than compose with {args.records} compacted records): "
          f"{'met' if goal_met else 'NOT met'}")
    return 0 if goal_met else 1


if __name__ == "__main__":
    sys.exit(main())
