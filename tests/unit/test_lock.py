"""lock: who holds it, and whether that holder is known to be alive (pure parts)."""

from __future__ import annotations

import os

from immutdock.gateways.procs import children, machine_id, start_time
from immutdock.targets.lock import Holder, holder_of


def holder(machine: str = "boot/pid:[1]", start: str = "100", pid: int = 42) -> Holder:
    return Holder(host="box", pid=pid, user="ops", since="-", command="release", machine=machine, start=start)


def test_alive_when_the_same_process_still_runs_here() -> None:
    assert holder().liveness("boot/pid:[1]", lambda _pid: "100") is True


def test_gone_when_the_pid_names_no_process() -> None:
    assert holder().liveness("boot/pid:[1]", lambda _pid: "") is False


def test_gone_when_the_pid_was_reused_by_another_process() -> None:
    assert holder().liveness("boot/pid:[1]", lambda _pid: "999") is False


def test_unknown_from_another_machine_boot_or_pid_namespace() -> None:
    # Same hostname (containers share one) and same PID mean nothing across namespaces.
    assert holder().liveness("boot/pid:[2]", lambda _pid: "100") is None
    assert holder().liveness("otherboot/pid:[1]", lambda _pid: "100") is None


def test_unknown_for_a_lock_without_machine_or_start_time() -> None:
    assert holder(machine="", start="").liveness("", lambda _pid: "") is None
    assert holder(start="").liveness("boot/pid:[1]", lambda _pid: "") is None


def test_this_process_reads_as_itself() -> None:
    me = holder(machine=machine_id(), start=start_time(os.getpid()), pid=os.getpid())
    assert machine_id() and start_time(os.getpid()).isdecimal()
    assert me.is_alive() and not me.is_gone()


def test_labels_round_trip_with_the_lock_id() -> None:
    h = holder_of({"io.immutdock.lock.host": "box", "io.immutdock.lock.pid": "7", "io.immutdock.lock.start": "5",
                 "io.immutdock.lock.machine": "m"}, "abc123")
    assert (h.host, h.pid, h.start, h.machine, h.lock_id, h.user) == ("box", 7, "5", "m", "abc123", "?")


def test_children_of_this_process() -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in children(os.getpid())
        assert start_time(child.pid).isdecimal()
    finally:
        child.kill()
        child.wait()
    assert child.pid not in children(os.getpid())


def test_a_child_that_exited_is_not_running_even_before_it_is_reaped() -> None:
    import signal
    import subprocess
    import time

    from immutdock.gateways.procs import running

    child = subprocess.Popen(["sleep", "30"])
    try:
        assert running(child.pid)
        os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while running(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not running(child.pid) and os.path.exists(f"/proc/{child.pid}"), "a zombie: exited, not reaped"
    finally:
        child.kill()
        child.wait()
    assert not running(child.pid)
