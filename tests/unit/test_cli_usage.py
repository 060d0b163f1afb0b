"""click's usage errors speak like every other bad input: one line, JSON with --json, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "immutdock", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args, message, where", [
    (("release", "--bogus"), "No such option '--bogus'", "immutdock release --help"),
    (("rollback", "--to"), "Option '--to' requires an argument", "immutdock rollback --help"),
    (("nosuch",), "No such command 'nosuch'", "immutdock --help"),
    (("prune", "--keep", "1"), "Invalid value for '--keep': 1 is not in the range x>=2", "immutdock prune --help"),
    (("status", "extra"), "Got unexpected extra argument (extra)", "immutdock status --help"),
])
@pytest.mark.parametrize("as_json", [False, True])
def test_a_usage_error_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], message: str, where: str,
                                              as_json: bool) -> None:
    proc = _run(tmp_path, *args, *(["--json"] if as_json and args[0] != "rollback" else []))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}") and f"see `{where}`" in lines[0], proc.stderr
    if as_json and args[0] != "rollback":
        data = json.loads(proc.stdout)
        assert (data["outcome"], data["exit_code"], data["hint"]) == ("error", 2, f"see `{where}`")
        assert data["error"].startswith(message)
    else:
        assert proc.stdout == ""


def test_help_and_version_still_exit_0(tmp_path: Path) -> None:
    assert _run(tmp_path, "--version").stdout.startswith("immutdock, version ")
    for args in (("--help",), ("release", "--help"), ("status", "-h")):
        proc = _run(tmp_path, *args)
        assert proc.returncode == 0 and proc.stdout.startswith("Usage: immutdock"), (args, proc.stderr)


def test_the_command_a_target_refusal_names_is_every_word_after_the_program() -> None:
    import click
    from click.testing import CliRunner

    from immutdock.cli.context import _command_words

    seen: list[str] = []

    @click.group()
    def top() -> None:
        pass

    @top.group()
    def volumes() -> None:
        pass

    @volumes.command()
    def ls() -> None:
        seen.append(_command_words())

    @top.command()
    def release() -> None:
        seen.append(_command_words())

    CliRunner().invoke(top, ["volumes", "ls"])
    CliRunner().invoke(top, ["release"])
    assert seen == ["volumes ls", "release"]


@pytest.mark.parametrize("argv, expected", [
    (["--json", "status"], ["status", "--json"]),
    (["-f", "app.yaml", "--target", "prod", "release", "--to", "x"], ["release", "--file", "app.yaml", "--target",
                                                                       "prod", "--to", "x"]),
    (["--file=app.yaml", "-v", "logs", "-f", "web"], ["logs", "--file=app.yaml", "-v", "-f", "web"]),
    (["--json", "volumes", "ls"], ["volumes", "ls", "--json"]),
    (["--profile", "debug", "--host", "ssh://a", "--identity", "k", "--accept-new-host-key", "plan"],
     ["plan", "--profile", "debug", "--host", "ssh://a", "--identity", "k", "--accept-new-host-key"]),
    (["status", "--json"], ["status", "--json"]),  # already after: as it was
    (["--json", "--bogus", "status"], ["--json", "--bogus", "status"]),  # for click to refuse
    (["--json"], ["--json"]),
    (["--version"], ["--version"]),
])
def test_the_options_every_command_takes_may_come_before_it(argv: list[str], expected: list[str]) -> None:
    from immutdock.cli.main import hoisted

    assert hoisted(argv, {"volumes"}) == expected


def test_options_before_the_command_work_as_after_it(tmp_path: Path) -> None:
    before, after = _run(tmp_path, "--json", "status"), _run(tmp_path, "status", "--json")
    assert (before.returncode, before.stdout) == (after.returncode, after.stdout) == (2, after.stdout)
    assert json.loads(before.stdout)["error"].endswith("no compose file here")
    # -f before `logs` is the file (logs' own -f follows); before a group, it reaches the subcommand.
    for args in (("-f", "nope.yaml", "logs"), ("-f", "nope.yaml", "--json", "volumes", "ls")):
        proc = _run(tmp_path, *args)
        assert proc.returncode == 2 and "nope.yaml: no such compose file" in proc.stderr, (args, proc.stderr)
    bogus = _run(tmp_path, "--json", "--bogus", "status")
    assert bogus.returncode == 2 and "No such option" in bogus.stderr, bogus.stderr


def test_version_says_why_an_engine_cannot_be_asked_and_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    proc = _run(tmp_path, "version", "--json")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["immutdock"].startswith("0.") and "cannot reach the Docker engine" in found["engine"], found
    assert "Connection aborted" not in found["engine"] and "urllib3" not in found["engine"], found


@pytest.mark.parametrize("how", ["NO_COLOR", "--no-color", "--no-color before"])
def test_no_color_and_no_color_flag_print_no_colour_on_a_terminal(tmp_path: Path, how: str) -> None:
    """On a terminal an error is red; NO_COLOR (no-color.org) or --no-color leave colour out."""
    import os
    import shlex

    def on_a_pty(*args: str, env: dict[str, str] | None = None) -> str:
        command = shlex.join([sys.executable, "-m", "immutdock", *args])
        return subprocess.run(["script", "-qec", command, "/dev/null"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, env={**os.environ, **(env or {})}).stdout

    assert "\x1b[31merror: " in on_a_pty("status")
    plain = {"NO_COLOR": on_a_pty("status", env={"NO_COLOR": "1"}), "--no-color": on_a_pty("status", "--no-color"),
             "--no-color before": on_a_pty("--no-color", "status")}[how]
    assert "error: " in plain and "\x1b[" not in plain, plain


def test_the_current_docker_context_names_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As `docker` and compose: DOCKER_HOST, else the context DOCKER_CONTEXT or the CLI's
    currentContext names; an unknown context is refused (exit 2)."""
    import hashlib

    config = tmp_path / "docker-config"
    meta = config / "contexts" / "meta" / hashlib.sha256(b"elsewhere").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": "elsewhere", "Endpoints": {"docker": {
        "Host": f"unix://{tmp_path}/elsewhere.sock", "SkipTLSVerify": False}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.delenv("DOCKER_HOST", raising=False)

    def engine(**env: str) -> str:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        proc = _run(tmp_path, "version", "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["engine"]

    assert f"{tmp_path}/elsewhere.sock" in engine(DOCKER_CONTEXT="elsewhere")
    monkeypatch.delenv("DOCKER_CONTEXT")
    (config / "config.json").write_text(json.dumps({"currentContext": "elsewhere"}))
    assert f"{tmp_path}/elsewhere.sock" in engine()
    assert f"{tmp_path}/first.sock" in engine(DOCKER_HOST=f"unix://{tmp_path}/first.sock")  # DOCKER_HOST wins
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.setenv("DOCKER_CONTEXT", "nosuch")
    refused = _run(tmp_path, "status")
    assert refused.returncode == 2 and "the docker context 'nosuch' does not exist" in refused.stderr, refused.stderr
    assert _run(tmp_path, "--help").returncode == 0  # the help never needs an engine


def test_the_options_moved_before_a_command_are_those_common_gives_every_command() -> None:
    import click

    from immutdock.cli.context import COMMON_FLAGS, COMMON_VALUED, Ctx, common

    @click.command()
    @common
    def some(ctx: Ctx) -> None:
        pass

    flags = {o for p in some.params if getattr(p, "is_flag", False) for o in p.opts}
    valued = {o for p in some.params if not getattr(p, "is_flag", False) for o in p.opts}
    assert (flags, valued) == (COMMON_FLAGS, set(COMMON_VALUED))
    assert all(long in valued and long.startswith("--") for long in COMMON_VALUED.values())


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_each_shells_script(tmp_path: Path, shell: str) -> None:
    proc = _run(tmp_path, "completion", shell)
    assert proc.returncode == 0 and "_IMMUTDOCK_COMPLETE" in proc.stdout, proc.stderr
    assert {"bash": "complete -o nosort -F _immutdock_completion immutdock", "zsh": "compdef _immutdock_completion immutdock",
            "fish": "complete --no-files --command immutdock"}[shell] in proc.stdout, proc.stdout


def test_bash_completes_commands_subcommands_and_options_with_the_script(tmp_path: Path) -> None:
    """The script, loaded in bash, asks immutdock itself: commands, a group's subcommands, options."""
    script = tmp_path / "immutdock.bash"
    script.write_text(_run(tmp_path, "completion", "bash").stdout)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "immutdock").write_text(f'#!/bin/sh\nexec {sys.executable} -m immutdock "$@"\n')
    (bin_dir / "immutdock").chmod(0o755)

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        proc = subprocess.run(["bash", "-c", f'source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; '
                               '_immutdock_completion immutdock; printf "%s\\n" "${COMPREPLY[@]}"'],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert complete("immutdock", "rel") == ["release"]
    assert set(complete("immutdock", "ro")) == {"rollback"}
    assert complete("immutdock", "volumes", "ba") == ["backup"]
    assert "--target" in complete("immutdock", "release", "--t")
    assert "--target" not in complete("immutdock", "init", "--"), "init runs here only: no SSH options"


@pytest.mark.parametrize("command, codes, places", [
    (("release",), ["0", "1", "2", "3", "4", "130"], True),
    (("plan",), ["0", "1", "2", "130"], True),
    (("status",), ["0", "1", "2", "3", "130"], True),
    (("history",), ["0", "1", "2", "130"], True),
    (("exec",), ["N", "1", "2", "130"], True),
    (("volumes", "ls"), None, True),
    (("init",), ["0", "2", "130"], False),
    (("build",), ["0", "1", "2", "130"], False),
])
def test_each_command_lists_its_own_exit_codes_and_only_the_options_it_uses(
        tmp_path: Path, command: tuple[str, ...], codes: list[str] | None, places: bool) -> None:
    proc = _run(tmp_path, *command, "--help")
    assert proc.returncode == 0, proc.stderr
    if codes is not None:
        listed = proc.stdout.split("Exit codes:")[1].splitlines()[1:]
        assert [line.split()[0] for line in listed if line.strip()] == codes, proc.stdout
    for option in ("--target", "--host", "--identity", "--accept-new-host-key"):
        assert (option in proc.stdout) == places, (option, proc.stdout)


def test_every_command_is_found_by_its_name_and_the_groups_are_known() -> None:
    """Commands are imported only when asked for: each name of the list finds a command of that
    name, and GROUPS (the argv hoisting's) is every one that has commands of its own."""
    import click

    from immutdock.cli.main import ELSEWHERE, GROUPS, main

    ctx = click.Context(main)
    found = {name: main.get_command(ctx, name) for name in main.list_commands(ctx)}
    assert set(ELSEWHERE) <= set(found) and all(cmd is not None and cmd.name == name for name, cmd in found.items())
    assert GROUPS == {name for name, cmd in found.items() if isinstance(cmd, click.Group)}
    assert main.get_command(ctx, "no-such-command") is None
