"""Benchmark immutdock's build-context hashing against a plain shell baseline.

Usage::

    .venv/bin/python bench/hash_context.py [--files 20000] [--mb 500] [--dir DIR] [--keep]

Generates (once; reused when a matching one is already there) a deterministic context
of about ``--files`` files totalling about ``--mb`` MB: many small source-like files in
nested directories plus some large binary ones. Then, after one warm-up read of every
file so the page cache is warm for both, it times (best of 3 interleaved rounds each)

* (a) ``immutdock.identity.contexthash.hash_context`` on the context, and
* (b) ``find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum``,

and prints both times, the ratio baseline/immutdock, and whether the goal (immutdock no
slower than the baseline) is met. The generated data is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from immutdock.identity.contexthash import ContextDigest, hash_context

DATASET_VERSION = 2
BASELINE = "set -o pipefail; find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum"
TOP_DIRS = ("src", "lib", "tests", "docs", "config", "scripts")
SMALL_EXTS = (".py", ".js", ".ts", ".go", ".json", ".yaml", ".md", ".html", ".css", ".sh")
LARGE_DIRS = ("assets/media", "vendor/blobs", "data/fixtures")
LARGE_EXTS = (".bin", ".tar", ".png", ".sqlite")
LARGE_SHARE = 0.65  # fraction of the bytes that sit in large files
_TEXT_ALPHABET = b"abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789    ().,:=\n"
TEXT_TABLE = bytes(_TEXT_ALPHABET[i % len(_TEXT_ALPHABET)] for i in range(256))


@dataclass(frozen=True)
class Spec:
    files: int
    mb: int
    seed: int

    @property
    def total_bytes(self) -> int:
        return self.mb * 1_000_000

    def manifest(self) -> dict[str, int]:
        return {"version": DATASET_VERSION, "files": self.files, "mb": self.mb, "seed": self.seed}


# --------------------------------------------------------------------------- dataset


def small_sizes(rng: random.Random, count: int, total: int) -> list[int]:
    """Log-normally distributed sizes (mostly a few KB, some tens of KB) summing to ~total."""
    raw = [rng.lognormvariate(8.0, 1.0) for _ in range(count)]
    scale = total / sum(raw)
    return [max(1, int(r * scale)) for r in raw]


def large_sizes(rng: random.Random, count: int, total: int) -> list[int]:
    raw = [rng.uniform(0.3, 1.7) for _ in range(count)]
    scale = total / sum(raw)
    return [int(r * scale) for r in raw]


def small_path(rng: random.Random, index: int) -> str:
    depth = rng.choice((1, 2, 2, 3, 3, 4))
    parts = [rng.choice(TOP_DIRS)] + [f"m{rng.randrange(12):02d}" for _ in range(depth - 1)]
    return "/".join(parts) + f"/file_{index:05d}{rng.choice(SMALL_EXTS)}"


def write_file(path: Path, data: bytes, executable: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if executable:
        path.chmod(0o755)


def generate(spec: Spec, context: Path) -> None:
    """Write the deterministic dataset for `spec` into the (new) directory `context`."""
    rng = random.Random(spec.seed)
    n_large = max(1, spec.files // 200)
    n_small = max(0, spec.files - n_large)
    large_total = int(spec.total_bytes * LARGE_SHARE) if n_small else spec.total_bytes
    for index, size in enumerate(small_sizes(rng, n_small, spec.total_bytes - large_total)):
        name = small_path(rng, index)
        text = rng.randbytes(size).translate(TEXT_TABLE)  # source-like: printable, with lines
        write_file(context / name, text, name.endswith(".sh"))
    for index, size in enumerate(large_sizes(rng, n_large, large_total)):
        name = f"{rng.choice(LARGE_DIRS)}/blob_{index:04d}{rng.choice(LARGE_EXTS)}"
        write_file(context / name, rng.randbytes(size), False)


def ensure_dataset(spec: Spec, base: Path) -> tuple[Path, bool]:
    """Return (context dir, generated now?) for `spec` under `base`, reusing a match."""
    context, manifest = base / "context", base / "manifest.json"
    if manifest.is_file() and context.is_dir():
        try:
            if json.loads(manifest.read_text()) == spec.manifest():
                return context, False
        except ValueError:
            pass
    shutil.rmtree(context, ignore_errors=True)
    manifest.unlink(missing_ok=True)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="context-", dir=base))
    generate(spec, staging)
    staging.rename(context)
    manifest.write_text(json.dumps(spec.manifest()))
    return context, True


# --------------------------------------------------------------------------- timing


def warm_up(context: Path) -> tuple[int, int]:
    """Read every file once (page cache warm for both contestants); return (files, bytes)."""
    files = total = 0
    for dirpath, _, names in os.walk(context):
        for name in names:
            with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
                while chunk := f.read(1 << 20):
                    total += len(chunk)
            files += 1
    return files, total


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def race(runs: int, ours: Callable[[], object], theirs: Callable[[], object]
         ) -> tuple[float, float, object]:
    """Best time of each over `runs` interleaved rounds (fair under changing load)."""
    best_ours = best_theirs = float("inf")
    result: object = None
    for _ in range(runs):
        elapsed, result = timed(ours)
        best_ours = min(best_ours, elapsed)
        best_theirs = min(best_theirs, timed(theirs)[0])
    return best_ours, best_theirs, result


def run_baseline(context: Path) -> str:
    proc = subprocess.run(["bash", "-c", BASELINE], cwd=context, capture_output=True, text=True,
                          check=True)
    return proc.stdout.split()[0]


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20_000, help="number of files (default 20000)")
    parser.add_argument("--mb", type=int, default=500, help="total size in MB (default 500)")
    parser.add_argument("--dir", type=Path, default=None, help="where to generate/reuse the data")
    parser.add_argument("--seed", type=int, default=20240601, help="random seed for the content")
    parser.add_argument("--workers", type=int, default=None, help="hash_context workers (default: CPUs)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per contestant (best is kept)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = Spec(files=args.files, mb=args.mb, seed=args.seed)
    base = args.dir or Path(tempfile.gettempdir()) / f"immutdock-bench-{spec.files}f-{spec.mb}mb-{spec.seed}"
    start = time.perf_counter()
    context, generated = ensure_dataset(spec, base)
    how = f"generated in {time.perf_counter() - start:.1f} s" if generated else "reused"
    try:
        files, total = warm_up(context)
        print(f"context: {context} ({how})")
        print(f"files:   {files:,}   bytes: {total:,} ({total / 1e6:.1f} MB)   CPUs: {os.cpu_count()}")
        ours, theirs, digest = race(
            args.runs,
            lambda: hash_context(context, context / "Dockerfile", workers=args.workers),
            lambda: run_baseline(context))
        report(ours, theirs, digest, args.runs)
    finally:
        if generated and not args.keep:
            cleanup(base)
    return 0


def cleanup(base: Path) -> None:
    """Remove what this run generated; `base` itself only if nothing else is in it."""
    shutil.rmtree(base / "context", ignore_errors=True)
    (base / "manifest.json").unlink(missing_ok=True)
    try:
        base.rmdir()
    except OSError:
        pass


def report(ours: float, theirs: float, result: object, runs: int) -> None:
    assert isinstance(result, ContextDigest)
    print(f"immutdock hash_context            best of {runs}: {ours:8.3f} s"
          f"   ({result.files:,} files, {result.bytes:,} bytes, {result.digest[:19]}...)")
    print(f"find|sort|xargs sha256sum         best of {runs}: {theirs:8.3f} s")
    ratio = theirs / ours if ours else float("inf")
    print(f"ratio baseline/immutdock: {ratio:.2f}x")
    verdict = "MET" if ours <= theirs else "NOT MET"
    print(f"goal (immutdock no slower than baseline): {verdict}")


if __name__ == "__main__":
    sys.exit(main())
