"""Image-only services (no build:), as a CMS image + database file writes them: each image is
pulled as its pull_policy says, pinned by its ID under the app's own tag, and a rollback runs
the same bits even after the file's tag moved. (No registry here: the images are stand-ins
built by the test and tagged like the public ones.)"""

from __future__ import annotations

import subprocess
import textwrap
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from .support import Load, cleanup, free_port, get, json_out, run_cli

pytestmark = pytest.mark.engine

# Its HEALTHCHECK never passes: the file turns it off (healthcheck: disable), as users do.
CMS_DOCKERFILE = """\
FROM busybox:latest
RUN mkdir -p /www && echo {version} > /www/version
HEALTHCHECK --interval=1s --retries=1 CMD false
CMD ["httpd", "-f", "-p", "80", "-h", "/www"]
"""
DB_DOCKERFILE = """\
FROM busybox:latest
CMD ["httpd", "-f", "-p", "3306", "-h", "/var/lib/mysql"]
"""


def stand_in(ref: str, dockerfile: str) -> str:
    subprocess.run(["docker", "build", "-q", "-t", ref, "-"], input=dockerfile.encode(), check=True,
                   capture_output=True)
    found = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True)
    return found.stdout.strip()


@pytest.fixture
def cms(tmp_path: Path, engine, app_name: str) -> Iterator[tuple[Path, str, int, str]]:
    tag = f"6-immutdock-test-{uuid.uuid4().hex[:8]}"
    web, db = f"wordpress:{tag}", f"mariadb:{tag}"
    stand_in(web, CMS_DOCKERFILE.format(version="v1"))
    stand_in(db, DB_DOCKERFILE)
    root = tmp_path / "app"
    root.mkdir()
    port = free_port()
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {app_name}
        services:
          wordpress:
            image: {web}
            restart: always
            ports: ["127.0.0.1:{port}:80"]
            environment:
              WORDPRESS_DB_HOST: db
            depends_on: [db]
            healthcheck:
              disable: true
          db:
            image: {db}
            restart: always
            volumes: ["db_data:/var/lib/mysql"]
        volumes:
          db_data:
        """))
    yield root, app_name, port, tag
    cleanup(app_name)
    subprocess.run(["docker", "rmi", "-f", web, db], capture_output=True)


def test_an_image_only_app_is_pinned_by_id_and_rolls_back_to_the_same_bits(cms, engine) -> None:
    root, name, port, tag = cms
    url = f"http://127.0.0.1:{port}"
    v1 = engine.images.get(f"wordpress:{tag}").id

    data = json_out(run_cli(root, "plan", "--json"))
    images = {i["service"]: i for i in data["images"]}
    assert images["wordpress"]["image"] == f"{name}-wordpress:id-{v1[7:19]}" and not images["wordpress"]["cached"]
    assert images["wordpress"]["pulled_from"] == f"wordpress:{tag}" and images["wordpress"]["image_id"] == v1
    assert images["db"]["image"] == f"mariadb:{tag}"  # a stateful service runs the file's reference
    plan = run_cli(root, "plan")
    assert f"pin wordpress:{tag} ({v1[:19]}) by its ID" in plan.stdout, plan.stdout
    assert engine.images.list(name=f"{name}-wordpress") == [], "plan pinned nothing"

    first = run_cli(root, "release")
    assert first.returncode == 0, first.stderr
    assert get(url, "/version")[1].strip() == "v1"
    assert engine.images.get(f"{name}-wordpress:id-{v1[7:19]}").id == v1

    v2 = stand_in(f"wordpress:{tag}", CMS_DOCKERFILE.format(version="v2"))  # the tag moves, as upstream tags do
    assert v2 != v1
    with Load(url, clients=3) as load:
        second = run_cli(root, "release")
    assert second.returncode == 0, second.stderr
    assert load.failures == [] and load.ok > 10, (load.failures[:5], load.ok)
    assert get(url, "/version")[1].strip() == "v2"
    records = json_out(run_cli(root, "history", "--json"))
    assert [r["images"]["wordpress"] for r in records[-2:]] == \
        [f"{name}-wordpress:id-{v1[7:19]}", f"{name}-wordpress:id-{v2[7:19]}"], records

    back = run_cli(root, "rollback")
    assert back.returncode == 0, back.stderr
    assert get(url, "/version")[1].strip() == "v1", "the rollback runs r1's bits, not what the tag names now"
    assert run_cli(root, "release").returncode == 0  # forward again: v2, pinned as before
    assert get(url, "/version")[1].strip() == "v2"

    stand_in(f"wordpress:{tag}", CMS_DOCKERFILE.format(version="v3"))
    assert run_cli(root, "release").returncode == 0
    pruned = run_cli(root, "prune", "--keep", "2")  # keeps v3 and v2 (also what a rollback picks); v1's pin goes
    assert pruned.returncode == 0, pruned.stderr
    tags = sum((i.tags for i in engine.images.list()), [])
    assert f"{name}-wordpress:id-{v1[7:19]}" not in tags and f"{name}-wordpress:id-{v2[7:19]}" in tags, tags
    assert f"mariadb:{tag}" in tags, "prune never removes an image the app did not build or pin"


def test_image_only_refusals_name_the_key_and_change_nothing(cms, engine) -> None:
    root, name, port, tag = cms
    compose = root / "compose.yaml"
    text = compose.read_text()
    missing = f"wordpress:gone-{uuid.uuid4().hex[:8]}"

    compose.write_text(text.replace(f"image: wordpress:{tag}", f"image: {missing}\n    pull_policy: never"))
    proc = run_cli(root, "release")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[0].startswith("error: services.wordpress.pull_policy: is never, "
                                                          f"and image {missing} is not on the engine"), proc.stderr

    compose.write_text(text.replace(f"image: wordpress:{tag}", f"image: {missing}"))
    plan = run_cli(root, "plan")  # plan fails as release will, with its line: no raw HTTP error
    proc = run_cli(root, "release")
    assert (plan.returncode, proc.returncode) == (1, 1), (plan.stderr, proc.stderr)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: services.wordpress.image: image {missing} is not on the engine and cannot be pulled ("), proc.stderr
    assert [ln for ln in plan.stderr.splitlines() if ln.startswith("error:")] == errors, plan.stderr
    assert "Server Error" not in proc.stderr and "http+docker" not in proc.stderr, proc.stderr
    assert engine.containers.list(all=True, filters={"label": f"io.immutdock.app={name}"}) == [], \
        "a release that cannot get its images starts nothing"


def test_profiles_are_recorded_and_a_rollback_runs_the_recorded_services(cms, engine) -> None:
    root, name, port, tag = cms
    compose = root / "compose.yaml"
    text = compose.read_text()
    assert "\nvolumes:\n" in text
    compose.write_text(text.replace("\nvolumes:\n", textwrap.dedent("""
          debug:
            image: busybox:latest
            command: ["sleep", "3600"]
            init: true
            profiles: [debug]
        volumes:
        """)))

    def debug_runs() -> bool:
        return bool(engine.containers.list(filters={"label": [f"io.immutdock.app={name}",
                                                              "com.docker.compose.service=debug"]}))

    assert run_cli(root, "release", "--profile", "debug").returncode == 0
    assert debug_runs()
    assert run_cli(root, "release").returncode == 0  # no profile: the debug service goes
    assert not debug_runs()
    records = json_out(run_cli(root, "history", "--json"))
    assert [(r["release"], r["profiles"]) for r in records] == [("r1", ["debug"]), ("r2", [])], records
    assert "profiles: debug" in run_cli(root, "history").stdout

    back = run_cli(root, "rollback", "--to", "r1")
    assert back.returncode == 0, back.stderr
    assert "r1 was released with profiles debug, and none is active now: the rollback runs r1's services " \
           "as recorded" in back.stderr, back.stderr
    assert debug_runs() and get(f"http://127.0.0.1:{port}", "/version")[1].strip() == "v1"
    assert json_out(run_cli(root, "history", "--json"))[-1]["profiles"] == ["debug"]
