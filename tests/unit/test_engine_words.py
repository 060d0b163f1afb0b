"""What the engine said, in words: the one line a user reads when the engine refuses or cannot
be reached, and where the file says a router address the engine cannot publish."""

from __future__ import annotations

from pathlib import Path

from .helpers import full_block, full_model, validate
from immutdock.apply.release_router import ROUTER_BASE
from immutdock.assets import folder
from immutdock.config.model import published_at
from immutdock.gateways.docker_api import _short


def test_an_api_error_is_the_engines_own_message_not_docker_pys_url() -> None:
    import docker.errors

    why = 'Get "https://nosuch.invalid/v2/": dial tcp: lookup nosuch.invalid: no such host'
    exc = docker.errors.APIError("500 Server Error for http+docker://localhost/v1.41/images/create?tag=1&"
                                 "fromImage=nosuch.invalid%2Fcache: Internal Server Error", explanation=why)
    assert _short(exc) == why


def test_a_lost_connection_is_the_systems_words() -> None:
    import requests.exceptions
    import urllib3.exceptions

    exc = requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError(
        "Connection aborted.", FileNotFoundError(2, "No such file or directory")))
    assert _short(exc) == "No such file or directory"
    assert _short(ConnectionRefusedError(111, "Connection refused")) == "Connection refused"
    assert _short(ValueError("first\nlast line")) == "last line"


def test_the_endpoint_the_engine_was_setting_up_is_left_out() -> None:
    said = ("driver failed programming external connectivity on endpoint flamboyant_grothendieck "
            "(6cd625cab5d3e4ca8f4272aa76f979439d414414cd9b0b668178d46347da2fb1): Error starting userland proxy: "
            "listen tcp4 127.0.0.1:19412: bind: address already in use")
    assert _short(said) == "listen tcp4 127.0.0.1:19412: bind: address already in use"
    other = "Bind for 0.0.0.0:8080 failed: port is already allocated"
    assert _short(f"driver failed programming external connectivity on endpoint x (abc123): {other}") == other


def test_an_address_is_named_where_the_file_writes_it(tmp_path: Path) -> None:
    model = full_model(tmp_path)
    model["services"]["web"]["ports"] = [
        {"mode": "ingress", "host_ip": "127.0.0.1", "target": 9000, "published": "9000", "protocol": "tcp"},
        {"mode": "ingress", "host_ip": "127.0.0.1", "target": 8000, "published": "8081", "protocol": "tcp"}]
    inferred = validate(model, {"stateful": ["db"]}, tmp_path)  # two routes, from ports:
    assert published_at(inferred, 1, "publish") == ("services.web.ports[1]", '"127.0.0.1:8081:8000"')
    assert published_at(inferred, 0, "publish") == ("services.web.ports[0]", '"127.0.0.1:8081:9000"')
    block = full_block()
    block["router"]["publish"] = "127.0.0.1:8090"
    del model["services"]["web"]["ports"]
    said = validate(model, block, tmp_path)  # written in the block: its key
    assert published_at(said, 0, "publish") == ("x-immutdock.router.publish", 'publish: "127.0.0.1:8081"')


def test_the_router_base_probed_is_the_router_images_default() -> None:
    """Before the router's image is built, a plan probes its addresses with its base image."""
    text = (folder("images") / "router" / "Dockerfile").read_text()
    assert f"ARG BASE={ROUTER_BASE}\n" in text


def test_an_error_raised_while_another_was_handled_is_said_as_itself() -> None:
    try:
        try:
            raise FileNotFoundError(2, "No such file or directory")
        except FileNotFoundError:
            raise ValueError("the real problem") from None
    except ValueError as exc:
        assert _short(exc) == "the real problem"
    assert _short(FileNotFoundError(2, "No such file or directory", "/run/x.sock")) == \
        "No such file or directory: /run/x.sock"


def test_a_registry_that_wants_credentials_is_not_judged_by_the_lookup() -> None:
    """The lookup sends no credentials; a pull sends those of `docker login`: plan does not
    refuse a private image that release would pull."""
    from immutdock.gateways.engine import Engine
    from immutdock.gateways.wire import Reply

    engine = Engine()
    answers = {"private/app:1": Reply(401, {}, b'{"message": "unauthorized: authentication required"}'),
               "hub/private:1": Reply(500, {}, b'{"message": "pull access denied for hub/private, repository does '
                                               b'not exist or may require \'docker login\'"}'),
               "nosuch.invalid/x:1": Reply(500, {}, b'{"message": "Get \\"https://nosuch.invalid/v2/\\": no such host"}'),
               "busybox:latest": Reply(200, {}, b"{}")}
    engine._send = lambda _what, _method, path, *_a, **_k: answers[  # type: ignore[method-assign]
        path.removeprefix("/distribution/").removesuffix("/json")]
    assert engine.registry_lookup("private/app:1") is None
    assert engine.registry_lookup("hub/private:1") is None
    assert engine.registry_lookup("busybox:latest") is None
    assert engine.registry_lookup("nosuch.invalid/x:1") == 'Get "https://nosuch.invalid/v2/": no such host'
