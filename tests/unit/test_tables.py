"""history and status print aligned tables with a header; history says why a release failed."""

from __future__ import annotations

from types import SimpleNamespace

from immutdock.cli.context import table
from immutdock.cli.inspect import _history_lines


def _row(release: str, kind: str = "release", outcome: str = "ok", source: str | None = None,
         message: str = "") -> dict:
    return {"release": release, "kind": kind, "created": "2026-12-07T06:02:17+00:00", "images": {"web": "a-web:1"},
            "git": None, "outcome": outcome, "message": message, "source": source, "compacted": False,
            "profiles": []}


def test_history_is_a_table_whose_columns_hold_on_a_rollback_and_say_why_a_release_failed() -> None:
    lines = _history_lines(SimpleNamespace(name="a"), [
        _row("r1"), _row("r2", outcome="failed", message="health gate failed:\n a-green-web-1 is unhealthy"),
        _row("r3", kind="rollback", source="r1")])
    assert lines[0].split() == ["RELEASE", "CREATED", "KIND", "OUTCOME", "GIT", "IMAGES", "WHY"]
    starts = {line.index("a-web:1") for line in lines[1:]}
    assert len(starts) == 1 and lines[0].index("IMAGES") in starts, lines
    assert lines[2].endswith("health gate failed: a-green-web-1 is unhealthy"), lines
    assert "rollback of r1" in lines[3] and lines[3].endswith("-"), lines


def test_a_table_pads_every_column_but_the_last() -> None:
    assert table([["A", "B", "C"], ["long value", "b", "c"]]) == ["A           B  C", "long value  b  c"]
