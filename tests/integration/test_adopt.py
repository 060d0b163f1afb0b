"""A compose file as its users write it (published ports, container_name, an image-only
database, a config from a file, no x-immutdock block) releases as it is: roles are inferred and shown by `plan`,
the router takes over the published address, and a release under load fails no request."""

from __future__ import annotations

import subprocess
import textwrap
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from .support import Load, cleanup, free_port, get, json_out, run_cli, write_web

pytestmark = pytest.mark.engine

VISIT = """\
#!/bin/sh
echo "Content-Type: text/plain"; echo
echo "$(cat /www/version) $(wget -q -O- http://$DB_HOST:5432/cgi-bin/incr)"
"""
# A stand-in for postgres (no registry here): it answers on 5432 and keeps a counter in its data path.
DB_DOCKERFILE = """\
FROM busybox:latest
RUN mkdir -p /www/cgi-bin && printf '%s\\n' '#!/bin/sh' 'echo "Content-Type: text/plain"; echo' \
    'd=/var/lib/postgresql/data; n=$(cat $d/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > $d/n; echo $n' \
    > /www/cgi-bin/incr && chmod +x /www/cgi-bin/incr
CMD ["httpd", "-f", "-p", "5432", "-h", "/www"]
"""


@pytest.fixture
def adopted(tmp_path: Path, engine, app_name: str) -> Iterator[tuple[Path, str, int, int, str]]:
    db_image = f"postgres:immutdock-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "build", "-q", "-t", db_image, "-"], input=DB_DOCKERFILE.encode(), check=True,
                   capture_output=True)
    root = tmp_path / "app"
    write_web(root / "web", {"cgi-bin/visit": VISIT})
    port, db_port = free_port(), free_port()
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {app_name}
        services:
          web:
            build: ./web
            container_name: {app_name}-web
            ports: ["127.0.0.1:{port}:8000"]
            environment:
              DB_HOST: {app_name}-db
            depends_on: [db]
            configs:
              - source: banner
                target: /www/banner
          db:
            image: {db_image}
            container_name: {app_name}-db
            ports: ["127.0.0.1:{db_port}:5432"]
            volumes: ["pgdata:/var/lib/postgresql/data"]
        volumes:
          pgdata:
        configs:
          banner:
            file: ./banner.txt
        """))
    (root / "banner.txt").write_text("hello from a config\n")
    yield root, app_name, port, db_port, db_image
    cleanup(app_name)
    subprocess.run(["docker", "rmi", "-f", db_image], capture_output=True)


def test_a_file_without_a_block_is_inferred_shown_and_released_without_failed_requests(adopted, engine) -> None:
    root, name, port, db_port, db_image = adopted
    url = f"http://127.0.0.1:{port}"

    plan = run_cli(root, "plan")
    assert plan.returncode == 0, plan.stderr
    assert f"publishes 127.0.0.1:{port}:8000; the router listens on 127.0.0.1:{port} and sends to container " \
           "port 8000" in plan.stdout, plan.stdout
    assert f"image {db_image} is a well-known postgres image" in plan.stdout
    assert f"container_name '{name}-web' is left out" in plan.stderr
    data = json_out(run_cli(root, "plan", "--json"))
    assert {r["service"]: (r["role"], r["inferred"]) for r in data["roles"]} == \
        {"web": ("routed", True), "db": ("stateful", True)}

    first = run_cli(root, "release")
    assert first.returncode == 0, first.stderr
    assert get(url, "/cgi-bin/visit")[1].strip() == "v1 1"
    assert get(url, "/banner") == (200, "hello from a config\n")  # configs: carried into the color
    assert get(f"http://127.0.0.1:{db_port}", "/cgi-bin/incr")[1].strip() == "2"  # db keeps its own port

    (root / "web" / "version").write_text("v2\n")
    with Load(url, clients=3) as load:
        second = run_cli(root, "release")
    assert second.returncode == 0, second.stderr
    assert load.failures == [] and load.ok > 20, (load.failures[:5], load.ok)
    assert get(url, "/cgi-bin/visit")[1].strip() == "v2 3"  # the volume's data survived

    db = engine.containers.get(f"{name}-db")  # the stateful service kept its name and its port
    assert db.attrs["HostConfig"]["PortBindings"]["5432/tcp"][0]["HostPort"] == str(db_port)
    webs = engine.containers.list(filters={"label": [f"io.immutdock.app={name}", "io.immutdock.role=color"]})
    assert webs and all(not (c.attrs["HostConfig"]["PortBindings"] or {}) for c in webs)
    assert all(c.name != f"{name}-web" for c in webs)


def test_init_writes_the_inferred_block_for_review_and_leaves_the_rest_of_the_file_as_it_was(adopted) -> None:
    root, name, port, db_port, db_image = adopted
    compose = root / "compose.yaml"
    original = "# our production file\n" + compose.read_text().replace("services:", "services:  # keep me", 1)
    compose.write_text(original)
    inferred = {r["service"]: r["role"] for r in json_out(run_cli(root, "plan", "--json"))["roles"]}

    printed = run_cli(root, "init", "--print")
    assert printed.returncode == 0 and compose.read_text() == original, "--print writes nothing"
    assert printed.stdout.startswith("# Written by `immutdock init`"), printed.stdout

    written = run_cli(root, "init")
    assert written.returncode == 0, written.stderr
    text = compose.read_text()
    assert text.startswith(original), "nothing before the block changed: comments and order kept"
    block = text[len(original):]
    assert block.strip("\n") == printed.stdout.strip("\n")
    assert f'    service: "web"\n    port: 8000\n    publish: "127.0.0.1:{port}"\n' in block, block
    assert f"    # db: image {db_image} is a well-known postgres image" in block and '    - "db"' in block, block

    data = json_out(run_cli(root, "plan", "--json"))
    assert {r["service"]: r["role"] for r in data["roles"]} == inferred
    assert {r["service"]: r["inferred"] for r in data["roles"]} == {"web": False, "db": False}, "now set, not inferred"

    again = run_cli(root, "init")
    assert again.returncode == 2 and compose.read_text() == text
    assert again.stderr.strip() == "error: x-immutdock: compose.yaml already has an x-immutdock block; edit it by " \
                                   "hand; `immutdock plan` shows each service's role and why", again.stderr
