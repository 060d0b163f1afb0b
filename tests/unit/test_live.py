"""The live region's rows, and how progress is said with and without a terminal."""

from __future__ import annotations

import io

import pytest

from immutdock.cli.live import LiveView, Rows
from immutdock.progress import Status, topic_of


def test_an_images_row_follows_buildkits_steps_and_keeps_its_step_through_other_output() -> None:
    rows = Rows()
    rows.update("image web", "web: building app-web:1")
    assert rows.rows["image web"] == ("build web", "building app-web:1", None, None)
    rows.update("image web", "web: #7 [web 2/5] RUN pip install -r requirements.txt")
    assert rows.rows["image web"] == ("build web", "step 2/5: RUN pip install -r requirements.txt", 2, 5)
    rows.update("image web", "web: #7 DONE 3.1s")
    assert rows.rows["image web"][1:] == ("step 2/5: RUN pip install -r requirements.txt", 2, 5)
    rows.update("image web", "web: built app-web:1")
    assert rows.rows["image web"] == ("build web", "built app-web:1", 5, 5)


def test_a_hosts_rows_are_its_own() -> None:
    rows = Rows()
    rows.update("gate web @ssh://h1", "ssh://h1: health: web: 0/1 healthy in the router's check")
    rows.update("gate web @ssh://h2", "ssh://h2: health: web: 1/1 healthy in the router's check")
    assert rows.rows["gate web @ssh://h1"] == ("ssh://h1 health web", "0/1 healthy in the router's check", None, None)
    assert rows.rows["gate web @ssh://h2"][1] == "1/1 healthy in the router's check"


def test_the_live_region_shows_a_row_per_topic_and_lines_above_it() -> None:
    from rich.console import Console

    out = io.StringIO()
    view = LiveView(Console(file=out, force_terminal=True, width=100, color_system=None))
    try:
        view.status("image web", "web: #5 [2/3] COPY . /app")
        view.line("[   0.6s] starting r2 as app-green")
        view.status("gate web", "health: web: 0/1 healthy in the router's check, waiting on app-green-web-1")
        view.status("drain", "draining blue: 3 requests in flight, 9 s of its 10 s grace left")
    finally:
        view.stop()
    text = out.getvalue()
    for said in ("build web", "step 2/3: COPY . /app", "starting r2 as app-green", "health web",
                 "0/1 healthy in the router's check", "drain", "3 requests in flight"):
        assert said in text, (said, text)
    assert "\x1b[" in text, "redrawn in place with the terminal's control sequences"


def test_a_status_is_a_message_with_a_topic() -> None:
    said = Status("drain", "draining blue", quiet=True)
    assert said == "draining blue" and topic_of(said) == "drain" and said.quiet
    assert topic_of("a plain line") is None


@pytest.mark.parametrize("quiet", [False, True])
def test_without_a_terminal_a_status_is_a_plain_line_and_a_countdown_is_left_out(
        capsys: pytest.CaptureFixture[str], quiet: bool) -> None:
    from immutdock.cli.context import Ctx

    ctx = Ctx(None, False, False)
    ctx.say(Status("settle", "watching green: 3 s left", quiet=quiet))
    ctx.say("traffic switched to green in 8 ms")
    err = capsys.readouterr().err
    assert ("watching green: 3 s left" in err) is not quiet, err
    assert "traffic switched to green in 8 ms" in err and "\x1b[" not in err


def test_an_images_row_shows_its_steps_latest_output() -> None:
    rows = Rows()
    rows.update("image web", "web: #6 [2/5] RUN apt-get update")
    rows.update("image web", "web: #6 3.214 Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]")
    assert rows.rows["image web"][1] == \
        "step 2/5: RUN apt-get update | Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]"


def test_transfers_are_bars_in_the_live_region() -> None:
    from rich.console import Console

    out = io.StringIO()
    view = LiveView(Console(file=out, force_terminal=True, width=100, color_system=None))
    try:
        view.status("image web", "web: built app-web:1")
        view.bar("ssh://h1: web layers", 512 * 1024, 1024 * 1024, "compressed")
    finally:
        view.stop()
    assert "ssh://h1: web layers" in out.getvalue() and "0.5/1.0 MB" in out.getvalue(), out.getvalue()
