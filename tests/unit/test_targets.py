"""Targets, SSH host addresses, layer shipping decisions and fleet drift: pure logic."""

from __future__ import annotations

import hashlib

import pytest

from immutdock.apply.fleet import drift
from immutdock.config.settings import parse_settings
from immutdock.errors import ConfigError
from immutdock.gateways.ssh import parse_host
from immutdock.targets.hosts import resolve
from immutdock.targets.registry import remote_ref
from immutdock.targets.ship import chain_ids, held_chains, layers_to_send


@pytest.mark.parametrize("text, host, user, port", [
    ("ssh://deploy@app1.example.com", "app1.example.com", "deploy", None),
    ("ssh://deploy@app2.example.com:2222", "app2.example.com", "deploy", 2222),
    ("app1", "app1", None, None),
    ("root@10.0.0.5:22", "10.0.0.5", "root", 22),
    ("ssh://me@[2001:db8::1]:2200", "2001:db8::1", "me", 2200),
])
def test_host_addresses_parse(text: str, host: str, user: str | None, port: int | None) -> None:
    spec = parse_host(text)
    assert (spec.host, spec.user, spec.port) == (host, user, port)
    assert spec.name.startswith("ssh://")


@pytest.mark.parametrize("text", ["tcp://host:2375", "ssh://", "ssh://host:99999", "ssh://host:x", "a b",
                                  "ssh://host/path", "ssh://user@"])
def test_bad_host_addresses_name_the_form(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_host(text, "x-immutdock.targets.prod.hosts[0]")
    assert err.value.message.startswith("x-immutdock.targets.prod.hosts[0]: ")
    assert err.value.hint


def test_targets_parse_with_defaults() -> None:
    targets = parse_settings({"targets": {"prod": {"hosts": ["ssh://a", "b:2222"], "parallel": 2, "canary": 1},
                                          "one": {"hosts": "ssh://c"}}}, set()).targets
    assert targets["prod"].hosts == ("ssh://a", "ssh://b:2222")
    assert (targets["prod"].parallel, targets["prod"].canary) == (2, 1)
    assert (targets["one"].hosts, targets["one"].parallel, targets["one"].canary) == (("ssh://c",), 1, 0)
    assert targets["prod"].registry is None


@pytest.mark.parametrize("text", ["registry.example.com:5000/team", "127.0.0.1:5000", "localhost:5000",
                                  "[::1]:5000", "ghcr.io/acme/shop", "reg.example.com/team/"])
def test_a_target_names_its_registry_as_images_are_named(text: str) -> None:
    target = parse_settings({"targets": {"prod": {"hosts": ["ssh://a"], "registry": text}}}, set()).targets["prod"]
    assert target.registry == text.rstrip("/")
    assert remote_ref(target.registry, "shop-web:3f2a9c1b7d4e") == f"{text.rstrip('/')}/shop-web:3f2a9c1b7d4e"


def test_a_registry_with_a_scheme_is_refused_with_the_address_without_it() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings({"targets": {"prod": {"hosts": ["ssh://a"], "registry": "https://reg.example.com:5000"}}},
                       set())
    assert err.value.hint == "write it without one: registry: reg.example.com:5000"


@pytest.mark.parametrize("block, where", [
    ({"prod": {"hosts": []}}, "x-immutdock.targets.prod.hosts"),
    ({"prod": {}}, "x-immutdock.targets.prod.hosts"),
    ({"prod": {"hosts": ["ssh://a", "a"]}}, "x-immutdock.targets.prod.hosts"),
    ({"prod": {"hosts": ["ssh://a"], "parallel": 0}}, "x-immutdock.targets.prod.parallel"),
    ({"prod": {"hosts": ["ssh://a"], "canary": 2}}, "x-immutdock.targets.prod.canary"),
    ({"prod": {"hosts": ["ssh://a"], "canary": True}}, "x-immutdock.targets.prod.canary"),
    ({"prod": {"hosts": ["ssh://a"], "regions": 2}}, "x-immutdock.targets.prod.regions"),
    ({"prod": {"hosts": ["http://a"]}}, "x-immutdock.targets.prod.hosts[0]"),
    ({"pr od": {"hosts": ["ssh://a"]}}, "x-immutdock.targets.pr od"),
    ({"prod": ["ssh://a"]}, "x-immutdock.targets.prod"),
    ({"prod": {"hosts": ["ssh://a"], "registry": "https://reg.example.com"}}, "x-immutdock.targets.prod.registry"),
    ({"prod": {"hosts": ["ssh://a"], "registry": "reg.example.com/Team"}}, "x-immutdock.targets.prod.registry"),
    ({"prod": {"hosts": ["ssh://a"], "registry": "reg.example.com/app:1"}}, "x-immutdock.targets.prod.registry"),
    ({"prod": {"hosts": ["ssh://a"], "registry": ""}}, "x-immutdock.targets.prod.registry"),
    ({"prod": {"hosts": ["ssh://a"], "registry": 5000}}, "x-immutdock.targets.prod.registry"),
])
def test_bad_targets_name_their_key_and_the_fix(block: dict, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings({"targets": block}, set())
    assert err.value.message.startswith(where + ": "), err.value.message
    assert err.value.hint and "\n" not in err.value.one_line()


class _App:
    class settings:  # noqa: N801 - stands in for App.settings
        targets = parse_settings({"targets": {"prod": {"hosts": ["ssh://a"]}}}, set()).targets

    class compose_file:  # noqa: N801
        name = "compose.yaml"


def test_a_command_names_a_target_a_host_or_neither() -> None:
    assert resolve(_App, None, ()) is None  # type: ignore[arg-type]
    assert resolve(_App, "prod", ()).hosts == ("ssh://a",)  # type: ignore[arg-type, union-attr]
    one_off = resolve(_App, None, ("ssh://x@h:2200", "h2"))  # type: ignore[arg-type]
    assert one_off is not None and one_off.hosts == ("ssh://x@h:2200", "ssh://h2")
    with pytest.raises(ConfigError, match="'staging' is not a target of compose.yaml .known: prod."):
        resolve(_App, "staging", ())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--host: given with --target"):
        resolve(_App, "prod", ("ssh://a",))  # type: ignore[arg-type]


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("host", ["ssh://ro;ot@h", "ssh://root@h$(id)", "a`id`", "ssh://root@h'x", "r t@h"])
def test_a_host_on_the_command_line_gets_the_checks_a_files_target_gets(host: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve(_App, None, (host,))  # type: ignore[arg-type]
    assert err.value.path == "--host"


def test_chain_ids_follow_the_image_spec() -> None:
    a, b, c = _sha("a"), _sha("b"), _sha("c")
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([]) == []


def test_only_layers_whose_whole_chain_the_host_lacks_are_sent() -> None:
    base, app_v1, app_v2 = _sha("base"), _sha("v1"), _sha("v2")
    manifest = [{"Config": "c2.json", "Layers": ["l-base/layer.tar", "l-v2/layer.tar"], "RepoTags": ["app:2"]}]
    configs = {"c2.json": {"rootfs": {"diff_ids": [base, app_v2]}}}
    # The host runs v1 (base + v1): the base chain is there, v2's is not.
    send, leave_out = layers_to_send(manifest, configs, held_chains([[base, app_v1]]))
    assert (send, leave_out) == ({"l-v2/layer.tar"}, {"l-base/layer.tar"})
    # The same diff ID on another chain is not the same layer: v2's bytes under another base are sent.
    other = _sha("other-base")
    send, _ = layers_to_send(manifest, configs, held_chains([[other, app_v2]]))
    assert send == {"l-base/layer.tar", "l-v2/layer.tar"}
    # An empty host gets everything; a host holding the image gets nothing.
    assert layers_to_send(manifest, configs, set())[0] == {"l-base/layer.tar", "l-v2/layer.tar"}
    assert layers_to_send(manifest, configs, held_chains([[base, app_v2]]))[0] == set()


def test_a_layer_file_shared_by_two_images_is_sent_when_either_needs_it() -> None:
    base, x = _sha("base"), _sha("x")
    manifest = [{"Config": "a.json", "Layers": ["b/layer.tar"]},
                {"Config": "b.json", "Layers": ["b/layer.tar", "x/layer.tar"]}]
    configs = {"a.json": {"rootfs": {"diff_ids": [base]}}, "b.json": {"rootfs": {"diff_ids": [base, x]}}}
    send, leave_out = layers_to_send(manifest, configs, set())
    assert send == {"b/layer.tar", "x/layer.tar"} and leave_out == set()


def test_drift_names_the_hosts_behind_the_newest_live_release() -> None:
    v1, v2 = {"web": "app-web:1"}, {"web": "app-web:2"}
    assert drift({"h1": (2, v2), "h2": (1, v1)}) == ["h2"]
    assert drift({"h1": (3, v1), "h2": (2, v2), "h3": (2, v2)}) == ["h2", "h3"]  # h1 was rolled back last
    assert drift({"h1": (2, v2), "h2": (3, v2)}) == []  # same images, other numbers: no drift
    assert drift({}) == []


def test_a_pull_and_a_push_count_the_layers_moved_and_those_already_there() -> None:
    from immutdock.gateways.engine_images import Transfer, _Layers

    seen: list[tuple[int, int]] = []
    pull = _Layers(moved="Pull complete", present="Already exists", sized={"Downloading": False, "Extracting": True},
                   counted=lambda done, total: seen.append((done, total)))
    for event in [{"status": "Pulling from bb", "id": "1"},  # the engine's events of a real pull
                  {"status": "Already exists", "progressDetail": {}, "id": "base"},
                  {"status": "Pulling fs layer", "progressDetail": {}, "id": "app"},
                  {"status": "Downloading", "progressDetail": {"current": 15965, "total": 1068983}, "id": "app"},
                  {"status": "Download complete", "progressDetail": {}, "id": "app"},
                  {"status": "Extracting", "progressDetail": {"current": 32768, "total": 1068983}, "id": "app"},
                  {"status": "Pull complete", "progressDetail": {}, "id": "app"},
                  {"status": "Digest: sha256:fc4a"}]:
        pull.add(event)
    assert pull.transfer() == Transfer(bytes=1068983, layers=1, present=1)
    assert seen == [(15965, 1068983), (1068983, 1068983)]  # extracting: all of it has come

    push = _Layers(moved="Pushed", present="Layer already exists", sized={"Pushing": False}, counted=None)
    for event in [{"status": "Preparing", "progressDetail": {}, "id": "app"},
                  {"status": "Layer already exists", "progressDetail": {}, "id": "base"},
                  {"status": "Pushing", "progressDetail": {"current": 2129920, "total": 1984172}, "id": "app"},
                  {"status": "Pushed", "progressDetail": {}, "id": "app"}]:
        push.add(event)
    assert push.transfer() == Transfer(bytes=1984172, layers=1, present=1)


def test_a_swarm_target_is_one_place_whose_nodes_get_the_images() -> None:
    targets = parse_settings({"targets": {
        "cluster": {"swarm": {"manager": "ssh://ops@m1", "nodes": ["ssh://ops@m1", "ops@w1:2222"]},
                    "registry": "reg.internal:5000"},
        "here": {"swarm": {"manager": "local", "nodes": ["ssh://ops@w1"]}},
        "alone": {"swarm": {"manager": "ssh://ops@m1"}}}}, set()).targets
    cluster = targets["cluster"]
    assert cluster.swarm is not None
    assert cluster.swarm.manager == "ssh://ops@m1"
    assert cluster.swarm.nodes == cluster.hosts == ("ssh://ops@m1", "ssh://ops@w1:2222")
    assert cluster.registry == "reg.internal:5000"
    assert targets["here"].swarm.manager == "local"
    assert targets["alone"].swarm.nodes == ("ssh://ops@m1",)  # a single-node swarm: its manager
    assert parse_settings({"targets": {"prod": {"hosts": ["ssh://a"]}}}, set()).targets["prod"].swarm is None


@pytest.mark.parametrize("swarm, where", [
    ({"nodes": ["ssh://a"]}, "x-immutdock.targets.c.swarm.manager"),
    ({"manager": "local"}, "x-immutdock.targets.c.swarm.nodes"),
    ({"manager": "ssh://a", "nodes": []}, "x-immutdock.targets.c.swarm.nodes"),
    ({"manager": "ssh://a", "nodes": ["ssh://b", "b"]}, "x-immutdock.targets.c.swarm.nodes"),
    ({"manager": "ssh://a;reboot"}, "x-immutdock.targets.c.swarm.manager"),
    ({"manager": "ssh://a", "workers": ["b"]}, "x-immutdock.targets.c.swarm.workers"),
    ("ssh://a", "x-immutdock.targets.c.swarm"),
])
def test_a_bad_swarm_target_names_its_key(swarm: object, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings({"targets": {"c": {"swarm": swarm}}}, set())
    assert err.value.message.startswith(f"{where}: ")
    assert err.value.hint


@pytest.mark.parametrize("key", ["hosts", "parallel", "canary"])
def test_a_swarm_target_takes_no_fleet_keys(key: str) -> None:
    block = {"swarm": {"manager": "ssh://a"}, key: ["ssh://b"] if key == "hosts" else 1}
    with pytest.raises(ConfigError) as err:
        parse_settings({"targets": {"c": block}}, set())
    assert err.value.message.startswith(f"x-immutdock.targets.c.{key}: is not for a swarm target")


def test_a_compose_color_waits_only_with_a_timeout_and_survives_only_when_asked() -> None:
    from immutdock.targets.engine import ComposeColors

    calls: list[tuple[str, bool, int | None, bool]] = []

    class Recording:
        def wait_for_survivor(self, project: str) -> None:
            pass

        def up(self, project: str, model: object, *, wait: bool = False, timeout: int | None = None,
               surviving: bool = False) -> None:
            calls.append((project, wait, timeout, surviving))

    class NoLeftovers:
        def project_containers(self, project: str) -> list:
            return []

    colors = ComposeColors(engine=NoLeftovers(), compose=Recording())  # type: ignore[arg-type]
    colors.up("a-state", {}, surviving=True)  # a stateful recreate: not waited on, finished if immutdock dies
    colors.up("a-state", {}, timeout=60)  # then waited on until healthy
    colors.up("a-blue", {})
    assert calls == [("a-state", False, None, True), ("a-state", True, 60, False), ("a-blue", False, None, False)]


def test_a_replacement_compose_left_unrenamed_is_removed_before_the_recreate_is_finished() -> None:
    """A kill between compose creating a stateful service's replacement (under the old
    container's short ID and `_`, labelled with what it replaces) and renaming it leaves both:
    the next `compose up` would recreate the old one under that same name while removing the
    other, a race it can lose. A compose that outlived immutdock is waited for first."""
    from immutdock import labels as L
    from immutdock.plan.state import ContainerState
    from immutdock.targets.engine import ComposeColors

    def container(cid: str, name: str, status: str, replaces: str | None = None) -> ContainerState:
        labels = {L.COMPOSE_PROJECT: "shop-state", **({L.COMPOSE_REPLACE: replaces} if replaces else {})}
        return ContainerState(id=cid + "0" * 52, name=name, labels=labels, status=status, health=None,
                              exit_code=None, image="db", stop_timeout=10)

    found = [container("dba26d81a45e", "shop-state-db-1", "exited"),
             container("e5cc70349a56", "dba26d81a45e_shop-state-db-1", "created", "dba26d81a45e" + "0" * 52),  # left half-made
             container("11cc70349a56", "0123456789ab_pg", "created", "0123456789ab" + "0" * 52),  # a container_name: pg
             container("77cc70349a56", "dba26d81a45e_shop-state-cache-1", "running", "dba26d81a45e"),  # it started
             container("88cc70349a56", "shop-state-queue-1", "created", "fedcba987654"),  # renamed, not started yet
             container("99cc70349a56", "abcdefabcdef_shop-state-x-1", "created")]  # not compose's replacement
    events: list[object] = []

    class Engine:
        def project_containers(self, project: str) -> list[ContainerState]:
            events.append(("listed", project))
            return found

        def remove_containers(self, gone: list[ContainerState]) -> None:
            events.append(("removed", [c.name for c in gone]))

    class Compose:
        def wait_for_survivor(self, project: str) -> None:
            events.append(("waited", project))

        def up(self, project: str, model: object, **kwargs: object) -> None:
            events.append(("up", project))

    colors = ComposeColors(engine=Engine(), compose=Compose())  # type: ignore[arg-type]
    colors.up("shop-state", {}, surviving=True)
    assert events == [("waited", "shop-state"), ("listed", "shop-state"),
                      ("removed", ["dba26d81a45e_shop-state-db-1", "0123456789ab_pg"]), ("up", "shop-state")]



def test_a_command_a_swarm_does_not_run_is_refused_and_the_volumes_commands_run_there() -> None:
    """A command added later that does not run on a swarm yet is refused (exit 2) before the
    swarm is reached; SSH hosts run every command."""
    from immutdock.config.model import Swarm, Target
    from immutdock.targets.hosts import refuse_unready

    cluster = Target(name="cluster", hosts=("ssh://m1",), swarm=Swarm(manager="ssh://m1", nodes=("ssh://m1",)))
    with pytest.raises(ConfigError, match="`immutdock later` does not run on a swarm yet"):
        refuse_unready(cluster, "later")
    refuse_unready(Target(name="hosts", hosts=("ssh://h1",)), "later")
    for command in ("volumes ls", "volumes backup", "volumes restore", "volumes verify", "release", "prune",
                    "ps", "ls", "logs", "exec", "run", "down"):
        refuse_unready(cluster, command)


def test_the_ssh_hosts_of_a_target_are_its_hosts_or_its_swarms_manager_and_nodes() -> None:
    """What `doctor --target` checks over SSH."""
    from immutdock.targets.hosts import ssh_hosts

    found = parse_settings({"targets": {
        "prod": {"hosts": ["ssh://a@h1", "ssh://a@h2"]},
        "swarm": {"swarm": {"manager": "ssh://a@m1", "nodes": ["ssh://a@w1"]}},
        "here": {"swarm": {"manager": "local", "nodes": ["ssh://a@w1"]}}}}, set()).targets
    assert ssh_hosts(found["prod"]) == ["ssh://a@h1", "ssh://a@h2"]
    assert ssh_hosts(found["swarm"]) == ["ssh://a@m1", "ssh://a@w1"]
    assert ssh_hosts(found["here"]) == ["ssh://a@w1"]
