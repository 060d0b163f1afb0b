"""Compose files with a one-shot `migrate` job, and an API with a MariaDB-like database,
secrets from files and `condition: service_healthy`, released as their users write them."""

from __future__ import annotations

import subprocess
import textwrap
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from .support import Load, cleanup, free_port, get, json_out, run_cli, write_web

pytestmark = pytest.mark.engine

SHOW = """\
#!/bin/sh
echo "Content-Type: text/plain"; echo
echo "$(cat /www/version) migrated:$(cat /shared/migrated)"
"""
MIGRATE = """\
#!/bin/sh
echo "applying migrations of $(cat /www/version)"
[ ! -f /www/broken ] || { echo "migration 0042 failed: column exists"; exit 3; }
cat /www/version > /shared/migrated
"""


@pytest.fixture
def migrating(tmp_path: Path, engine, app_name: str) -> Iterator[tuple[Path, str, int]]:
    root = tmp_path / "app"
    write_web(root / "web", {"cgi-bin/show": SHOW, "migrate": MIGRATE})
    port = free_port()
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {app_name}
        services:
          web:
            build: ./web
            ports: ["127.0.0.1:{port}:8000"]
            volumes: ["shared:/shared"]
            depends_on:
              migrate:
                condition: service_completed_successfully
          migrate:
            build: ./web
            command: ["sh", "/www/migrate"]
            volumes: ["shared:/shared"]
        volumes:
          shared:
        """))
    yield root, app_name, port
    cleanup(app_name)


def test_a_migrate_job_runs_once_per_release_before_the_new_color_and_a_failure_keeps_the_old(
        migrating, engine) -> None:
    root, name, port = migrating
    url = f"http://127.0.0.1:{port}"
    roles = {r["service"]: r["role"] for r in json_out(run_cli(root, "plan", "--json"))["roles"]}
    assert roles == {"web": "routed", "migrate": "job"}, roles

    assert run_cli(root, "release").returncode == 0
    assert get(url, "/cgi-bin/show")[1].strip() == "v1 migrated:v1"

    (root / "web" / "version").write_text("v2\n")
    with Load(url, clients=3) as load:
        second = run_cli(root, "release")
    assert second.returncode == 0, second.stderr
    assert load.failures == [] and load.ok > 10, (load.failures[:5], load.ok)
    assert get(url, "/cgi-bin/show")[1].strip() == "v2 migrated:v2", "the new image's migration ran first"
    jobs = engine.containers.list(all=True, filters={"label": [f"io.immutdock.app={name}",
                                                               "com.docker.compose.service=migrate"]})
    assert [(j.labels["io.immutdock.release"], j.status, j.attrs["State"]["ExitCode"]) for j in jobs] == \
        [("r2", "exited", 0)], "one run per release; the old color's went with it"
    again = json_out(run_cli(root, "release", "--json"))
    assert again["outcome"] == "noop", "an exited job does not make what serves look broken"

    (root / "web" / "version").write_text("v3\n")
    (root / "web" / "broken").write_text("")
    with Load(url, clients=2) as load:
        failed = run_cli(root, "release")
    assert failed.returncode == 1, failed.stderr
    assert "r3 failed: migrate exited with code 3 before the new color could start" in failed.stderr, failed.stderr
    assert "migration 0042 failed: column exists" in failed.stderr, "its last log lines are shown"
    assert "the previous release is still serving" in failed.stderr
    assert load.failures == [], load.failures[:5]
    assert get(url, "/cgi-bin/show")[1].strip() == "v2 migrated:v2"
    colors = {c.labels["io.immutdock.color"] for c in engine.containers.list(
        all=True, filters={"label": [f"io.immutdock.app={name}", "io.immutdock.role=color"]})}
    assert colors == {"green"}, "the failed color was removed"


API_CGI = """\
#!/bin/sh
echo "Content-Type: text/plain"; echo
echo "$(cat /www/version) $(wget -q -O- http://mariadb:3306/cgi-bin/query?$(cat /run/secrets/db_password))"
"""
# A MariaDB stand-in: healthy only after a slow start, answering only the right password.
MARIADB_DOCKERFILE = """\
FROM busybox:latest
RUN mkdir -p /www/cgi-bin && printf '%s\\n' '#!/bin/sh' 'echo "Content-Type: text/plain"; echo' \
    '[ "$QUERY_STRING" = "$(cat /run/secrets/db_password)" ] && echo rows:3 || echo denied' \
    > /www/cgi-bin/query && chmod +x /www/cgi-bin/query
CMD ["sh", "-c", "sleep 3; touch /tmp/ready; exec httpd -f -p 3306 -h /www"]
"""


@pytest.fixture
def api_app(tmp_path: Path, engine, app_name: str) -> Iterator[tuple[Path, str, int, str]]:
    db_image = f"mariadb:10.6-immutdock-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "build", "-q", "-t", db_image, "-"], input=MARIADB_DOCKERFILE.encode(), check=True,
                   capture_output=True)
    root = tmp_path / "app"
    write_web(root / "api", {"cgi-bin/items": API_CGI})
    (root / "db_password.txt").write_text(f"pw{uuid.uuid4().hex}\n")
    port = free_port()
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {app_name}
        services:
          api:
            build: ./api
            container_name: {app_name}-api
            ports: ["127.0.0.1:{port}:8000"]
            secrets: [db_password]
            depends_on:
              mariadb:
                condition: service_healthy
          mariadb:
            image: {db_image}
            restart: always
            secrets: [db_password]
            volumes: ["db:/var/lib/mysql"]
            healthcheck:
              test: ["CMD", "test", "-f", "/tmp/ready"]
              interval: 1s
              retries: 30
        volumes:
          db:
        secrets:
          db_password:
            file: ./db_password.txt
        """))
    yield root, app_name, port, db_image
    cleanup(app_name)
    subprocess.run(["docker", "rmi", "-f", db_image], capture_output=True)


def test_an_api_with_mariadb_file_secrets_and_service_healthy_waits_for_the_database(api_app, engine) -> None:
    root, name, port, _ = api_app
    url = f"http://127.0.0.1:{port}"
    first = run_cli(root, "release")
    assert first.returncode == 0, first.stderr
    assert get(url, "/cgi-bin/items")[1].strip() == "v1 rows:3", "both read the secret file"
    db = engine.containers.get(f"{name}-state-mariadb-1")
    api, = engine.containers.list(filters={"label": [f"io.immutdock.app={name}", "io.immutdock.role=color"]})
    # When the db first turned healthy, from the engine's events (its health log keeps only the
    # last five checks, which a watch after the switch outlasts).
    events = engine.events(since=int(time.time()) - 600, until=int(time.time()) + 1, decode=True,
                           filters={"container": db.id, "event": "health_status"})
    healthy = [e["timeNano"] for e in events if e.get("status") == "health_status: healthy"]
    assert healthy, "the db never turned healthy"
    started = datetime.fromisoformat(api.attrs["State"]["StartedAt"][:26].rstrip("Z")).replace(tzinfo=timezone.utc)
    assert started.timestamp() * 1e9 > min(healthy), "the API started after its database was healthy"

    (root / "api" / "version").write_text("v2\n")
    with Load(url, clients=3) as load:
        second = run_cli(root, "release")
    assert second.returncode == 0, second.stderr
    assert load.failures == [] and load.ok > 10, (load.failures[:5], load.ok)
    assert get(url, "/cgi-bin/items")[1].strip() == "v2 rows:3"
    password = (root / "db_password.txt").read_text().strip()
    for c in engine.containers.list(all=True, filters={"label": f"io.immutdock.app={name}"}):
        assert password not in str(c.labels), c.name


# As everywhere in a compose file, $$ is a literal $ (compose interpolates $VAR itself).
HOOKS = """\
x-immutdock:
  hooks:
    pre-switch:
      service: web
      command: ["sh", "-c", "[ ! -f /www/smokefail ] || {{ echo smoke test failed on $$IMMUTDOCK_COLOR; exit 1; }};
                             wget -q -O- $$IMMUTDOCK_URL/version | grep -qx \\"$$(cat /www/version)\\""]
    post-switch:
      - service: migrate
        command: ["sh", "-c", "[ ! -f /www/announcefail ] || {{ echo announce failed; exit 2; }};
                               echo $$IMMUTDOCK_RELEASE on $$IMMUTDOCK_COLOR > /shared/announced"]
"""


def test_hooks_run_in_new_containers_around_the_switch_and_a_failing_pre_switch_hook_undoes(
        migrating, engine) -> None:
    root, name, port = migrating
    url = f"http://127.0.0.1:{port}"
    (root / "compose.yaml").write_text((root / "compose.yaml").read_text() + HOOKS.format())
    first = run_cli(root, "release")
    assert first.returncode == 0, first.stderr
    assert "pre-switch hook in web" in first.stderr and "post-switch hook in migrate" in first.stderr

    (root / "web" / "version").write_text("v2\n")
    assert run_cli(root, "release").returncode == 0
    announced = subprocess.run(["docker", "run", "--rm", "-v", f"{name}_shared:/shared", "busybox:latest",
                                "cat", "/shared/announced"], capture_output=True, text=True, check=True).stdout
    assert announced.strip() == "r2 on green", "post-switch ran with the new release's name and color"

    (root / "web" / "version").write_text("v3\n")
    (root / "web" / "smokefail").write_text("")
    with Load(url, clients=2) as load:
        failed = run_cli(root, "release")
    assert failed.returncode == 1, failed.stderr
    assert "r3 failed: the pre-switch hook in web failed" in failed.stderr, failed.stderr
    assert "smoke test failed on blue" in failed.stderr and "the previous release is still serving" in failed.stderr
    assert load.failures == [] and get(url, "/version")[1].strip() == "v2"
    left = engine.containers.list(all=True, filters={"label": f"com.docker.compose.project={name}-hook"})
    assert left == [], "hook containers are removed"

    (root / "web" / "smokefail").unlink()
    (root / "web" / "announcefail").write_text("")  # the post-switch hook fails: the new release still serves
    late = run_cli(root, "release")
    assert late.returncode == 4, late.stderr
    assert "r4 is live on blue, but a step after the switch failed: the post-switch hook in migrate failed; " \
           "blue serves" in late.stderr and "announce failed" in late.stderr, late.stderr
    assert "--reap" not in late.stderr, "the old color was retired before the hook ran: nothing is left to reap"
    assert get(url, "/version")[1].strip() == "v3"
