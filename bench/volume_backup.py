"""Benchmark: backup and restore throughput of `immutdock volumes` against the plain way,
`docker run --rm -v VOL:/v busybox tar`, on the same volume.

Usage::

    .venv/bin/python bench/volume_backup.py [--mb 128] [--runs 3] [--keep]

Needs the Docker engine and `busybox:latest` on it (`bash .ci/base-images`). One run:

1. An app under a unique name whose file declares one volume `data`; the volume is made
   with the app's label and filled with `--mb` MB: half random bytes (incompressible, like
   media), half text (compressible, like a database's pages of rows), in 64 files.
2. `--runs` times each, interleaved, backup then restore:
   - immutdock: `immutdock volumes backup data --to DIR` (the whole command: reads the file,
     the helper image is there already, the tar stream through the engine's archive API,
     gzip level 6 and one SHA-256 per file here, the manifest), then `immutdock volumes
     restore BACKUP --into dataN` (the archive's SHA-256 checked, unpacked through the
     archive API, then every file's SHA-256 in the volume compared with the manifest);
   - plain: `docker run --rm -v VOL:/v busybox tar -czf - -C /v .` into a file (busybox
     gzip, level 6), then `docker run --rm -i -v dataN:/v busybox tar -xzf - -C /v` from it
     (no checksum, no check of what was written).

Prints the median wall time and MB/s (of the volume's size) of each, the archive sizes, and
the goals: immutdock's backup at least as fast as the plain way's; its restore, which also
checks the archive before and every file after, within 1.5 times the plain way's.
Everything is removed unless --keep."""

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
# A restore reads the archive once more for its SHA-256 before writing anything, and hashes
# every file in the volume afterwards; plain tar checks nothing.
RESTORE_FACTOR = 1.5

FILL = """\
set -e
half=$(( {mb} * 1024 / 2 / 32 ))   # KiB per file, 32 files of each kind
for i in $(seq 1 32); do
  dd if=/dev/urandom of=/v/random-$i bs=1024 count=$half 2>/dev/null
  yes "row $i: 2026-11-22 10:10:10 | order 4711 | 3 items | EUR 129.90 | shipped" | head -c $((half * 1024)) > /v/text-$i
done
"""


def _app(root: Path, name: str) -> None:
    (root / "web").mkdir(parents=True)
    (root / "web" / "Dockerfile").write_text('FROM busybox:latest\nCMD ["httpd", "-f", "-p", "8000"]\n')
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        services:
          web:
            build: ./web
            volumes: ["data:/data"]
        volumes:
          data: {{}}
        x-immutdock:
          router: {{service: web, port: 8000, publish: "127.0.0.1:1"}}
        """))


def _timed(argv: list[str], **kw) -> float:
    t0 = time.monotonic()
    kw.setdefault("stdout", subprocess.PIPE)
    proc = subprocess.run(argv, stderr=subprocess.PIPE, **kw)
    took = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{(proc.stderr or b'').decode()[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    name = f"bench{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="immutdock-bench-"))
    volume = f"{name}_data"
    times: dict[str, list[float]] = {"immutdock backup": [], "plain backup": [],
                                     "immutdock restore": [], "plain restore": []}
    sizes: dict[str, int] = {}
    try:
        _app(work / "app", name)
        subprocess.run(["docker", "volume", "create", "--label", f"io.immutdock.app={name}",
                        "--label", "io.immutdock.role=volume", volume], check=True, capture_output=True)
        subprocess.run(["docker", "run", "--rm", "-v", f"{volume}:/v", "busybox:latest", "sh", "-c",
                        FILL.format(mb=args.mb)], check=True)
        # the helper image is built once, before anything is timed
        subprocess.run([*IMMUTDOCK, "volumes", "ls"], cwd=work / "app", check=True, capture_output=True)
        warm = subprocess.run([*IMMUTDOCK, "volumes", "backup", "--to", str(work / "warm")], cwd=work / "app",
                              capture_output=True, text=True)
        if warm.returncode != 0:
            sys.exit(warm.stderr)
        for run in range(args.runs):
            folder = work / f"b{run}"
            times["immutdock backup"].append(_timed([*IMMUTDOCK, "volumes", "backup", "data", "--to", str(folder),
                                                     "--json"], cwd=work / "app"))
            archive = next(folder.glob("*.tar.gz"))
            sizes["immutdock"] = archive.stat().st_size
            plain = work / f"plain{run}.tar.gz"
            with plain.open("wb") as out:
                times["plain backup"].append(_timed(["docker", "run", "--rm", "-v", f"{volume}:/v:ro", "busybox:latest",
                                                     "tar", "-czf", "-", "-C", "/v", "."], stdout=out))
            sizes["plain"] = plain.stat().st_size
            times["immutdock restore"].append(_timed([*IMMUTDOCK, "volumes", "restore", str(archive), "--into",
                                                      f"i{run}", "--json"], cwd=work / "app"))
            subprocess.run(["docker", "volume", "create", "--label", f"io.immutdock.app={name}", f"{name}_p{run}"],
                           check=True, capture_output=True)
            with plain.open("rb") as src:
                times["plain restore"].append(_timed(["docker", "run", "--rm", "-i", "-v", f"{name}_p{run}:/v",
                                                      "busybox:latest", "tar", "-xzf", "-", "-C", "/v"], stdin=src))
        mb = args.mb
        print(f"volume: {mb} MB in 64 files (half random, half text); {args.runs} runs, interleaved")
        for what, found in times.items():
            med = statistics.median(found)
            print(f"  {what:<18} median {med:6.2f} s  {mb / med:7.1f} MB/s  (runs: "
                  f"{', '.join(f'{t:.2f}' for t in found)})")
        print(f"  archive: immutdock {sizes['immutdock'] / 1e6:.1f} MB, plain {sizes['plain'] / 1e6:.1f} MB")
        for step, factor in (("backup", 1.0), ("restore", RESTORE_FACTOR)):
            ours, theirs = statistics.median(times[f"immutdock {step}"]), statistics.median(times[f"plain {step}"])
            goal = "at least as fast as plain tar" if factor == 1.0 else \
                f"within {factor}x of plain tar, checks included"
            print(f"goal: immutdock {step} {goal}: {ours:.2f} s vs {theirs:.2f} s: "
                  f"{'PASS' if ours <= theirs * factor else 'FAIL'}")
    finally:
        if not args.keep:
            cleanup(name)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
