"""`immutdock drift` and `heal` on the real engine: a released app is no drift; a file edited
inside a running container, a container started by hand with the app's labels, and a compose
file changed without a release are reported, each with the container and what changed; heal
replaces the edited container with a fresh one of the same release, dropping no request."""

from __future__ import annotations

import pytest

from .support import Load, TinyApp, json_out, run_cli

pytestmark = pytest.mark.engine


def _drift(app: TinyApp) -> tuple[int, list[dict]]:
    proc = run_cli(app.root, "drift", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json_out(proc)["drift"]


def test_drift_names_an_edited_file_a_stranger_and_an_unreleased_file_and_heal_replaces_the_edit(
        tiny: TinyApp, engine) -> None:
    assert run_cli(tiny.root, "release").returncode == 0
    assert tiny.visit() == "v1 1"  # the db writes its counter: in its volume, not drift
    code, found = _drift(tiny)
    assert (code, found) == (0, []), found
    text = run_cli(tiny.root, "drift")
    assert text.returncode == 0 and text.stdout.strip() == "no drift (r1)", text.stdout

    web = engine.containers.list(filters={"label": [f"io.immutdock.app={tiny.name}", "io.immutdock.role=color"]})[0]
    assert web.exec_run(["sh", "-c", "echo hacked > /www/version"]).exit_code == 0  # a snowflake
    code, found = _drift(tiny)
    assert code == 1 and [(f["kind"], f["container"]) for f in found] == [("filesystem", web.name)], found
    assert "changed /www/version" in found[0]["detail"]
    text = run_cli(tiny.root, "drift")
    assert text.returncode == 1 and f"filesystem  {web.name}: " in text.stdout, text.stdout

    with Load(tiny.url, clients=3) as load:  # heal: fresh containers of r1, through the gate and the switch
        healed = run_cli(tiny.root, "heal", "--json")
    assert healed.returncode == 0, healed.stderr
    assert [f["kind"] for f in json_out(healed)["healed"]] == ["filesystem"], healed.stdout
    assert load.failures == [] and load.ok > 0, load.failures[:5]
    assert _drift(tiny) == (0, [])
    assert tiny.visit() == "v1 2"  # the db kept its data
    rows = json_out(run_cli(tiny.root, "history", "--json"))
    assert [(r["release"], r["kind"], r["source"]) for r in rows][-1] == ("r2", "heal", "r1"), rows

    hand = engine.containers.run("busybox:latest", ["sleep", "300"], detach=True, name=f"{tiny.name}-by-hand",
                                 labels={"io.immutdock.app": tiny.name, "io.immutdock.role": "color"})
    try:
        code, found = _drift(tiny)
        assert code == 1 and [(f["kind"], f["container"]) for f in found] == [("stranger", hand.name)], found
        nothing = run_cli(tiny.root, "heal")  # a stranger is reported, never replaced
        assert nothing.returncode == 0 and "nothing to heal" in nothing.stdout, nothing.stdout + nothing.stderr
        assert "not healed: stranger" in nothing.stderr, nothing.stderr
    finally:
        hand.remove(force=True)

    compose = tiny.root / "compose.yaml"
    compose.write_text(compose.read_text().replace("stop_grace_period: 5s", "stop_grace_period: 6s"))
    code, found = _drift(tiny)
    assert code == 1 and [f["kind"] for f in found] == ["config"], found
    assert run_cli(tiny.root, "release").returncode == 0  # the file made live
    assert _drift(tiny) == (0, [])

    db = engine.containers.list(filters={"label": [f"io.immutdock.app={tiny.name}", "io.immutdock.role=state"]})[0]
    assert db.exec_run(["sh", "-c", "echo '# hacked' >> /www/cgi-bin/incr"]).exit_code == 0  # a stateful snowflake
    counter = int(tiny.visit().split()[1])
    code, found = _drift(tiny)
    assert code == 1 and [(f["kind"], f["container"]) for f in found] == [("filesystem", db.name)], found
    left = run_cli(tiny.root, "heal")  # stateful drift is reported, never replaced without --stateful
    assert left.returncode == 0 and "nothing to heal" in left.stdout, left.stdout + left.stderr
    assert "not healed: filesystem" in left.stderr and "add --stateful" in left.stderr, left.stderr
    assert db.id in [c.id for c in engine.containers.list(filters={"label": f"io.immutdock.app={tiny.name}"})]
    healed = run_cli(tiny.root, "heal", "--stateful", "--json")
    assert healed.returncode == 0, healed.stderr
    assert json_out(healed)["stateful_replaced"] == ["db"] and "stop-first" in healed.stderr, healed.stdout
    assert _drift(tiny) == (0, [])
    fresh = engine.containers.list(filters={"label": [f"io.immutdock.app={tiny.name}", "io.immutdock.role=state"]})
    assert [c.id for c in fresh] != [db.id]
    assert tiny.visit().split()[1] == str(counter + 1)  # a fresh container on the same volume
