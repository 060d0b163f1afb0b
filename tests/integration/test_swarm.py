"""Swarm targets, on a real Swarm of three test hosts (all managers): where the release
history and the lock live. They are Swarm configs, so every manager sees the same records
and the same lock, and an engine that manages no swarm is refused."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from immutdock.errors import ConfigError, EngineError, LockHeld, ReleaseFailed
from immutdock.gateways.engine import Engine
from immutdock.targets.ledger import Record
from immutdock.targets.lock import _my_labels, lock_name
from immutdock.targets.swarm import swarm_ledger

from .swarm import SwarmHosts

pytestmark = pytest.mark.engine


def record(number: int, outcome: str = "ok", second: int = 0) -> Record:
    return Record(number=number, kind="release", color="blue" if number % 2 else "green",
                  images={"web": f"web:t{number}"}, config_hash="sha256:c",
                  created=f"2026-12-04T00:0{number}:{second:02d}Z", outcome=outcome)


def test_the_records_one_manager_writes_another_reads_and_a_rewrite_keeps_one(swarm: SwarmHosts,
                                                                             app_name: str) -> None:
    try:
        with swarm.opened(swarm.hosts[0], swarm.hosts[2]) as (first, third):
            ours, theirs = swarm_ledger(first.engine), swarm_ledger(third.engine)
            written = ours.write(app_name, record(1, "switching"))
            ours.write(app_name, record(2))
            assert [(r.id, r.outcome) for r in theirs.records(app_name)] == [("r1", "switching"), ("r2", "ok")]
            theirs.rewrite(app_name, written, dataclasses.replace(written, outcome="ok"))
            assert [(r.id, r.outcome) for r in ours.records(app_name)] == [("r1", "ok"), ("r2", "ok")]
            # Each record is one config, on the cluster: the node's own engine lists them.
            listed = swarm.hosts[1].docker("config", "ls", "--format", "{{.Name}}",
                                           "--filter", f"label=io.immutdock.app={app_name}").stdout.split()
            assert len(listed) == 2, listed
            # A second record of the same number keeps both (a name taken is never overwritten).
            ours.write(app_name, record(2, "failed", second=30))
            assert [(r.id, r.outcome) for r in theirs.records(app_name)] == [("r1", "ok"), ("r2", "ok"),
                                                                              ("r2", "failed")]
    finally:
        swarm.remove_configs(app_name)


def test_the_lock_is_the_clusters_and_a_dead_holders_is_taken_over(swarm: SwarmHosts, app_name: str) -> None:
    said: list[str] = []
    try:
        with swarm.opened(swarm.hosts[0], swarm.hosts[1]) as (first, second):
            ours, theirs = swarm_ledger(first.engine), swarm_ledger(second.engine)
            with ours.lock(app_name, "release", said.append):
                with pytest.raises(LockHeld) as held:
                    with theirs.lock(app_name, "release", said.append):
                        pass
                assert "another release of" in held.value.message and "(release)" in held.value.message
            # Freed when the holder is done: the other manager takes it.
            with theirs.lock(app_name, "prune", said.append):
                pass
            # A holder that died on this machine: its lock is taken over, and said so.
            dead = subprocess.Popen([sys.executable, "-c", ""])
            dead.wait()
            labels = {**_my_labels(app_name, "release"), "io.immutdock.lock.pid": str(dead.pid)}
            assert first.engine.create_config(lock_name(app_name), labels) is not None
            with theirs.lock(app_name, "release", said.append):
                pass
            assert any("taking over the lock" in m for m in said), said
    finally:
        swarm.remove_configs(app_name)


def test_unlock_frees_a_lock_held_elsewhere_and_refuses_a_live_one_without_force(swarm: SwarmHosts,
                                                                                app_name: str) -> None:
    said: list[str] = []
    try:
        with swarm.opened(swarm.hosts[2]) as (third,):
            ledger = swarm_ledger(third.engine)
            labels = {**_my_labels(app_name, "release"), "io.immutdock.lock.machine": "elsewhere"}
            assert third.engine.create_config(lock_name(app_name), labels) is not None
            freed = ledger.unlock(app_name, False, said.append)
            assert freed is not None and freed.command == "release"
            assert third.engine.config(lock_name(app_name)) is None
            with ledger.lock(app_name, "release", said.append):  # this live process holds it
                with pytest.raises(ConfigError) as refused:
                    ledger.unlock(app_name, False, said.append)
                assert refused.value.exit_code == 2 and "held by a running process" in refused.value.message
                assert ledger.unlock(app_name, True, said.append) is not None
    finally:
        swarm.remove_configs(app_name)


def test_an_engine_that_manages_no_swarm_is_refused(engine: object) -> None:
    with pytest.raises(EngineError) as refused:
        swarm_ledger(Engine())  # the suite's own engine never joins a swarm
    assert "is not a manager of a Docker Swarm" in refused.value.message


# -- the watch after a deploy -------------------------------------------------------------------

HEALTH = ["--health-interval", "1s", "--health-retries", "1", "--health-timeout", "2s", "--health-start-period", "0s"]
UPDATE = ["--update-parallelism", "1", "--update-monitor", "3s", "--update-delay", "0s"]


def _service(swarm: SwarmHosts, name: str, image: str, healthy: bool = True, *extra: str) -> None:
    swarm.hosts[0].docker("service", "create", "--detach", "--name", name, "--replicas", "2",
                          "--health-cmd", "true" if healthy else "false", *HEALTH, *UPDATE, *extra,
                          image, "sleep", "3600", timeout=120)


def _update(swarm: SwarmHosts, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return swarm.hosts[0].docker("service", "update", *args, name, timeout=180, check=False)


def test_the_watch_waits_for_every_replica_at_the_deployed_image(swarm: SwarmHosts, app_name: str) -> None:
    from immutdock.apply.converge import watch_services

    swarm.load("busybox:latest")
    swarm.tag_image("busybox:latest", f"{app_name}:v2")
    name = f"{app_name}_web"
    said: list[str] = []
    try:
        _service(swarm, name, "busybox:latest")
        with swarm.opened(swarm.hosts[1]) as (manager,):
            first = watch_services(manager.engine, {name: "busybox:latest"}, 90, 2, said.append)
            assert (first[name].running, first[name].desired) == (2, 2)
            _update(swarm, name, "--detach", "--image", f"{app_name}:v2", "--no-resolve-image")
            second = watch_services(manager.engine, {name: f"{app_name}:v2"}, 90, 2, said.append)
            assert second[name].done is True and second[name].running == 2
        tasks = swarm.hosts[0].docker("service", "ps", "--filter", "desired-state=running", "--format",
                                      "{{.Image}}", name).stdout.split()
        assert tasks == [f"{app_name}:v2"] * 2, tasks
        assert f"{name}: 2/2 running" in said and any("of the previous image" in m for m in said), said
    finally:
        swarm.remove_services(app_name)


@pytest.mark.parametrize("action, says", [("rollback", "Swarm rolled the update back"),
                                          ("pause", "Swarm paused the update")])
def test_an_update_swarm_rolls_back_or_pauses_fails_the_watch_where_the_cli_says_nothing(
        swarm: SwarmHosts, app_name: str, action: str, says: str) -> None:
    from immutdock.apply.converge import watch_services

    swarm.load("busybox:latest")
    swarm.tag_image("busybox:latest", f"{app_name}:v2")
    name = f"{app_name}_web"
    try:
        _service(swarm, name, "busybox:latest", True, "--update-failure-action", action)
        with swarm.opened(swarm.hosts[2]) as (manager,):
            watch_services(manager.engine, {name: "busybox:latest"}, 90, 1, lambda _m: None)
            # The new version fails its health check; `docker service update --detach` exits 0.
            cli = _update(swarm, name, "--detach", "--image", f"{app_name}:v2", "--no-resolve-image",
                          "--health-cmd", "false")
            assert cli.returncode == 0, cli.stderr
            with pytest.raises(ReleaseFailed) as failed:
                watch_services(manager.engine, {name: f"{app_name}:v2"}, 120, 2, lambda _m: None)
        assert failed.value.exit_code == 1
        assert failed.value.message.startswith(f"service {name}: {says}"), failed.value.message
    finally:
        swarm.remove_services(app_name)


def test_an_image_no_node_has_fails_the_watch_naming_the_task_error(swarm: SwarmHosts, app_name: str) -> None:
    from immutdock.apply.converge import watch_services

    swarm.load("busybox:latest")
    name = f"{app_name}_web"
    try:
        _service(swarm, name, "busybox:latest", True, "--restart-delay", "1s")
        with swarm.opened(swarm.hosts[0]) as (manager,):
            watch_services(manager.engine, {name: "busybox:latest"}, 90, 1, lambda _m: None)
            _update(swarm, name, "--detach", "--image", f"{app_name}:nowhere", "--no-resolve-image",
                    "--update-failure-action", "continue")
            with pytest.raises(ReleaseFailed) as failed:
                watch_services(manager.engine, {name: f"{app_name}:nowhere"}, 120, 2, lambda _m: None)
        assert "No such image" in failed.value.message, failed.value.message
    finally:
        swarm.remove_services(app_name)
