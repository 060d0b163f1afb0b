"""This machine's processes, read from /proc (Linux). Elsewhere every answer is empty."""

from __future__ import annotations

import os


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/PID/stat from field 3 (state) on. The command name (field 2) may hold spaces
    and parentheses, so the line is split after its last ")"."""
    return _read(f"/proc/{pid}/stat").rpartition(")")[2].split()


def machine_id() -> str:
    """This boot of this machine and this PID namespace: where a PID means one process."""
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = ""
    boot = _read("/proc/sys/kernel/random/boot_id")
    return f"{boot}/{pidns}" if boot and pidns else ""


def start_time(pid: int) -> str:
    """The start time of a process (clock ticks since boot), "" when there is none."""
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else ""


def running(pid: int) -> bool:
    """Whether a process exists and has not exited (a zombie, not yet reaped, has)."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def _pids() -> list[str]:
    """Every PID of this machine (as /proc names it), none where there is no /proc."""
    try:
        return [entry for entry in os.listdir("/proc") if entry.isdecimal()]
    except OSError:
        return []


def _parent(pid: int | str) -> str:
    fields = _stat_fields(pid)
    return fields[1] if len(fields) > 1 else ""


def children(pid: int) -> list[int]:
    """The PIDs whose parent is `pid`."""
    return [int(entry) for entry in _pids() if _parent(entry) == str(pid)]


def with_args(*words: str) -> list[int]:
    """The PIDs of this machine's processes whose command line holds each of `words` as one of
    its arguments (this process and its children left out)."""
    me = str(os.getpid())
    found = []
    for entry in _pids():
        if entry == me or _parent(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if all(w.encode() in argv for w in words):
            found.append(int(entry))
    return found
