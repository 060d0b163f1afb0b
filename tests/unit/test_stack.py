"""stack: the models immutdock renders, as the files `docker stack deploy` takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import APP, IMAGES, REDACTOR, full_app, full_block, raises_config
from immutdock import labels as L
from immutdock.plan import haproxy, render
from immutdock.plan.stack import STACK_VERSION, object_name, router_stack, stack, state_stack

DIGESTS = {"secrets.api_key": "sha256:" + "ab" * 32}


def _color(tmp_path: Path) -> tuple[dict, list[str]]:
    model = render.color_project(full_app(tmp_path), "blue", IMAGES, "r3", "sha256:c")
    return stack(model, APP, DIGESTS)


def test_a_color_as_a_stack_answers_by_dns_and_keeps_what_swarm_takes(tmp_path: Path) -> None:
    out, notes = _color(tmp_path)
    assert out["version"] == STACK_VERSION and "name" not in out and notes == []
    web = out["services"]["web"]
    assert web["image"] == IMAGES["web"]
    for left_out in ("pull_policy", "depends_on", "build", "restart"):
        assert left_out not in web
    assert web["deploy"]["endpoint_mode"] == "dnsrr"  # no virtual IP: no IPVS needed
    # immutdock's labels on the containers (found on every node by them) and on the service.
    assert web["labels"][L.COLOR] == "blue" and web["labels"]["team"] == "shop"
    assert web["deploy"]["labels"] == {k: v for k, v in web["labels"].items() if k.startswith("io.immutdock.")}
    assert "team" not in web["deploy"]["labels"]
    # Networks: no priority (a stack's schema has none); the edge network is immutdock's overlay.
    assert all("priority" not in (spec or {}) for spec in web["networks"].values())
    assert web["networks"][render.EDGE] == {"aliases": [haproxy.routed_alias("blue", "web")]}
    assert out["networks"][render.EDGE] == {"external": True, "name": render.edge_network(APP)}
    assert out["networks"]["back"]["driver"] == "overlay"
    assert out["networks"]["shared"] == {"name": "shared-net", "external": True}
    assert out[render.ROUTER_SETTINGS] == render.backend_settings(full_app(tmp_path))


def test_a_secret_is_named_by_its_content(tmp_path: Path) -> None:
    out, _ = _color(tmp_path)
    name = object_name(APP, "secrets", "api_key", DIGESTS["secrets.api_key"])
    assert name == f"{APP}_secret_api_key_{'ab' * 6}"
    # External to the stack: immutdock makes it, and a color's stack removed leaves it to the other's.
    assert out["secrets"]["api_key"] == {"external": True, "name": name}
    assert "s3cr3t" not in str(out)  # the value is in no stack file
    changed, _ = stack(render.color_project(full_app(tmp_path), "blue", IMAGES, "r3", "sha256:c"), APP,
                       {"secrets.api_key": "sha256:" + "cd" * 32})
    assert changed["secrets"]["api_key"]["name"] != name  # a changed value is a new object


def test_a_secret_not_made_from_a_file_is_refused(tmp_path: Path) -> None:
    model = render.color_project(full_app(tmp_path), "blue", IMAGES, "r3", "sha256:c")
    model["secrets"]["api_key"] = {"name": "x", "environment": "API_KEY"}
    with raises_config("secrets.api_key"):
        stack(model, APP, DIGESTS)


def test_the_stateful_service_runs_one_task_stop_first_on_its_volumes_node(tmp_path: Path) -> None:
    model = render.state_project(full_app(tmp_path), IMAGES, REDACTOR)
    out, notes = state_stack(model, {"db": "node-id-1"})
    db = out["services"]["db"]
    assert db["deploy"]["replicas"] == 1
    assert db["deploy"]["update_config"]["order"] == "stop-first"
    assert db["deploy"]["rollback_config"]["order"] == "stop-first"
    assert db["deploy"]["placement"]["constraints"] == ["node.id == node-id-1"]
    assert db["ports"] == [{"target": 5432, "published": 5432, "protocol": "tcp", "mode": "host"}]
    assert "container_name" not in db
    assert notes == ["services.db.container_name 'shop-db' is left out: on a Swarm, its task's container "
                     "is named by Swarm (reach it by its service name)"]
    unplaced, _ = state_stack(model, {})  # the first release: Swarm picks the node, then it is kept
    assert "placement" not in unplaced["services"]["db"]["deploy"]


@pytest.mark.parametrize("deploy", [{"replicas": 2}, {"mode": "global"}])
def test_a_stateful_service_of_more_than_one_task_is_refused(tmp_path: Path, deploy: dict) -> None:
    model = render.state_project(full_app(tmp_path), IMAGES, REDACTOR)
    model["services"]["db"]["deploy"] = deploy
    with raises_config("services.db.deploy"):
        state_stack(model, {})


def test_a_port_bound_to_one_address_or_a_network_mode_is_refused(tmp_path: Path) -> None:
    model = render.state_project(full_app(tmp_path), IMAGES, REDACTOR)
    model["services"]["db"]["ports"][0]["host_ip"] = "127.0.0.1"
    with raises_config("services.db.ports[0]") as refused:
        state_stack(model, {})
    assert "every address of the node" in str(refused.value)
    model = render.state_project(full_app(tmp_path), IMAGES, REDACTOR)
    model["services"]["db"]["network_mode"] = "host"
    with raises_config("services.db.network_mode"):
        state_stack(model, {})


def test_the_router_runs_on_every_routing_node_publishing_in_host_mode(tmp_path: Path) -> None:
    block = full_block()
    block["router"]["publish"] = 8080
    model = render.router_project(full_app(tmp_path, block), "immutdock-router:abc", "blue")
    out, _ = router_stack(model, "node.labels.immutdock-route == true")
    svc = out["services"]["router"]
    assert svc["deploy"]["mode"] == "global" and svc["deploy"]["update_config"] == {"order": "stop-first"}
    assert svc["deploy"]["placement"] == {"constraints": ["node.labels.immutdock-route == true"]}
    assert svc["ports"] == [{"target": 8080, "published": 8080, "protocol": "tcp", "mode": "host"}]
    assert svc["environment"]["IMMUTDOCK_LIVE"] == "blue"
    assert out["networks"]["edge"]["name"] == render.edge_network(APP)


def test_a_router_published_on_one_address_is_refused_naming_the_routers_key(tmp_path: Path) -> None:
    model = render.router_project(full_app(tmp_path), "img", "blue")  # publishes on 127.0.0.1
    with raises_config("x-immutdock.router.publish"):
        router_stack(model)


def test_a_service_another_waits_to_complete_is_a_swarm_job_without_retries_or_updates() -> None:
    model = {"services": {
        "migrate": {"image": "app:t1", "deploy": {"update_config": {"order": "start-first"}},
                    "restart": "no"},
        "web": {"image": "app:t1", "depends_on": {"migrate": {"condition": "service_completed_successfully"}}},
    }}
    out, _notes = stack(model, APP, {})
    job = out["services"]["migrate"]["deploy"]
    assert job["mode"] == "replicated-job" and job["restart_policy"] == {"condition": "none"}
    assert "update_config" not in job and "rollback_config" not in job
    assert out["services"]["web"]["deploy"].get("mode") is None  # the service that waits stays a service
    assert STACK_VERSION >= "3.9"  # where stack files gained jobs


@pytest.mark.parametrize("waits_for", ["web", "seed"])
def test_a_job_that_waits_for_a_service_of_its_color_is_refused(waits_for: str) -> None:
    done = {"condition": "service_completed_successfully"}
    model = {"services": {
        "seed": {"image": "app:t1"},
        "migrate": {"image": "app:t1", "depends_on": {waits_for: {"condition": "service_started"}}},
        "web": {"image": "app:t1", "depends_on": {"migrate": done, "seed": done}},
    }}
    with raises_config("services.migrate.depends_on"):
        stack(model, APP, {})
