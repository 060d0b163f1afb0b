"""How many real-world compose files `immutdock plan` takes as written.

    .venv/bin/python bench/corpus_plan.py FOLDER [--json]

Every `compose.yaml`, `compose.yml`, `docker-compose.yaml` or `docker-compose.yml` under FOLDER
(for example a checkout of a public collection of compose examples) is planned with
`immutdock plan --json` in its own folder, under a unique app name, on the local engine
(read-only: plan never builds, pulls or starts anything). Each file is one row: planned,
refused (exit 2, with the one line immutdock printed) or crashed (any other exit, or a
traceback). Goals: no file crashes; every refusal is one line naming what to change.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
IMMUTDOCK = Path(sys.executable).parent / "immutdock"


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.name in NAMES and p.is_file() and ".git" not in p.parts)


def plan(path: Path) -> dict[str, object]:
    name = f"corpus{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "COMPOSE_PROJECT_NAME": name}
    proc = subprocess.run([str(IMMUTDOCK), "plan", "--json", "--file", str(path)], cwd=path.parent,
                          capture_output=True, text=True, env=env, timeout=300)
    said = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    crashed = proc.returncode not in (0, 2) or "Traceback" in proc.stderr
    outcome = "crashed" if crashed else "planned" if proc.returncode == 0 else "refused"
    row: dict[str, object] = {"file": str(path), "outcome": outcome, "exit": proc.returncode}
    if outcome == "planned":
        data = json.loads(proc.stdout)
        row["roles"] = {r["service"]: r["role"] for r in data.get("roles", [])}
        row["binds"] = [b.get("target") for b in data.get("binds", [])]
    else:
        errors = [ln for ln in said if ln.startswith("error")] or said[-1:]
        row["said"] = errors[0] if errors else ""
        row["one_line"] = len(errors) == 1
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [plan(p) for p in files(args.folder)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            rel = os.path.relpath(str(row["file"]), args.folder)
            detail = row.get("said") or ", ".join(f"{s}: {r}" for s, r in dict(row.get("roles") or {}).items())
            print(f"{row['outcome']:<8} {rel:<58} {detail}")
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("planned", "refused", "crashed")}
    print(f"\n{len(rows)} files: {counts['planned']} planned, {counts['refused']} refused, {counts['crashed']} crashed")
    crash_free = counts["crashed"] == 0
    one_line = all(r.get("one_line", True) for r in rows)
    print(f"[{'PASS' if crash_free else 'FAIL'}] no file crashes")
    print(f"[{'PASS' if one_line else 'FAIL'}] every refusal is one line")
    return 0 if crash_free and one_line else 1


if __name__ == "__main__":
    sys.exit(main())
