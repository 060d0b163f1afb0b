"""Several routes, TCP routes and TLS, on compose files written as their users write them: the
router takes over every address the file publishes and switches them all at once."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
import subprocess
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from .support import Load, Looping, cleanup, free_port, get, json_out, run_cli, write_web
from .test_jobs import api_app  # noqa: F401 - the fixture the shop builds on

FRONT_CGI = """\
#!/bin/sh
echo "Content-Type: text/plain"; echo
echo "front $(cat /www/version) api $(wget -q -O- http://api:8000/version)"
"""


@pytest.fixture
def shop(api_app) -> tuple[Path, str, int, int]:
    """frontend + API + MariaDB (stand-in), a file secret, `service_healthy`, `container_name`, no
    x-immutdock block: test_jobs' API app with a frontend in front of it."""
    root, name, api, _ = api_app
    write_web(root / "frontend", {"cgi-bin/page": FRONT_CGI})
    front = free_port()
    compose = (root / "compose.yaml").read_text()
    (root / "compose.yaml").write_text(compose.replace("services:\n", textwrap.dedent(f"""\
        services:
          frontend:
            build: ./frontend
            ports: ["127.0.0.1:{front}:8000"]
            depends_on: [api]
        """), 1))
    return root, name, front, api


class Sequence(Looping):
    """One client asking both routes in turn, each on a new connection, recording the versions."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__()
        self.urls, self.seen, self.failures = urls, [], []

    def _run(self) -> None:
        while not self._stop.is_set():
            for url in self.urls:
                try:
                    status, body = get(url, "/version", timeout=10)
                    (self.seen if status == 200 else self.failures).append(body.strip() or str(status))
                except OSError as exc:
                    self.failures.append(type(exc).__name__)


def test_frontend_api_and_mariadb_are_routed_together_and_switched_at_once(shop, engine) -> None:
    root, name, front, api = shop
    front_url, api_url = f"http://127.0.0.1:{front}", f"http://127.0.0.1:{api}"
    plan = run_cli(root, "plan", "--json")
    assert plan.returncode == 0, plan.stderr
    roles = {r["service"]: r["role"] for r in json_out(plan)["roles"]}
    assert roles == {"frontend": "routed", "api": "routed", "mariadb": "stateful"}

    first = run_cli(root, "release")
    assert first.returncode == 0, first.stderr
    assert get(front_url, "/cgi-bin/page")[1].strip() == "front v1 api v1"
    assert get(api_url, "/cgi-bin/items")[1].strip() == "v1 rows:3"
    status = json_out(run_cli(root, "status", "--json"))
    assert [(r["service"], r["publish"], r["up"]) for r in status["router"]["routes"]] == [
        ("frontend", f"127.0.0.1:{front}", 1), ("api", f"127.0.0.1:{api}", 1)]
    assert status["problem"] is None

    for service in ("frontend", "api"):
        (root / service / "version").write_text("v2\n")
    with Load(front_url, clients=2) as front_load, Load(api_url, clients=2) as api_load, \
            Sequence([front_url, api_url]) as both:
        second = run_cli(root, "release")
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("traffic switched to green") == 1, "one switch moves both routes"
    for load in (front_load, api_load):
        assert load.failures == [] and load.ok > 10, (load.failures[:5], load.ok)
    assert both.failures == [] and "v2" in both.seen
    first_v2 = both.seen.index("v2")
    assert "v1" not in both.seen[first_v2:], "once one route answered v2, no route answered v1 again"
    assert get(front_url, "/cgi-bin/page")[1].strip() == "front v2 api v2"
    assert get(api_url, "/cgi-bin/items")[1].strip() == "v2 rows:3"
    password = (root / "db_password.txt").read_text().strip()
    for c in engine.containers.list(all=True, filters={"label": f"io.immutdock.app={name}"}):
        assert password not in str(c.labels), c.name


BROKER_DOCKERFILE = """\
FROM busybox:latest
COPY version port /
CMD ["sh", "-c", "exec nc -ll -p $(cat /port) -e cat /version"]
"""


def tcp_read(url: str, _path: str = "") -> tuple[int, str]:
    """Connect, read to the end: (200, what the server said) or (0, "") when it said nothing."""
    host, port = url.removeprefix("tcp://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        data = b""
        while chunk := sock.recv(100):
            data += chunk
    return (200 if data else 0), data.decode()


@pytest.fixture
def broker_app(tmp_path: Path, engine, app_name: str) -> Iterator[tuple[Path, str, int, int]]:
    """A web service and an MQTT-like TCP service (container port 1883), each publishing a port;
    no x-immutdock block."""
    root = tmp_path / "app"
    write_web(root / "web", {"cgi-bin/ok": "#!/bin/sh\necho ok\n"})
    (root / "broker").mkdir()
    (root / "broker" / "Dockerfile").write_text(BROKER_DOCKERFILE)
    (root / "broker" / "version").write_text("v1\n")
    (root / "broker" / "port").write_text("1883\n")
    web, broker = free_port(), free_port()
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {app_name}
        services:
          web:
            build: ./web
            ports: ["127.0.0.1:{web}:8000"]
          broker:
            build: ./broker
            ports: ["127.0.0.1:{broker}:1883"]
            stop_grace_period: 1s
            healthcheck:
              test: ["CMD", "test", "-f", "/version"]
              interval: 1s
        """))
    yield root, app_name, web, broker
    cleanup(app_name)


def test_a_tcp_service_is_routed_checked_by_connecting_and_released_without_a_failed_connection(broker_app) -> None:
    root, _, web, broker = broker_app
    tcp_url, web_url = f"tcp://127.0.0.1:{broker}", f"http://127.0.0.1:{web}"
    plan = run_cli(root, "plan", "--json")  # no x-immutdock block: the TCP route is inferred
    assert plan.returncode == 0, plan.stderr
    reasons = {r["service"]: r["reason"] for r in json_out(plan)["roles"]}
    assert "container port 1883 is MQTT's, not HTTP: routed as TCP" in reasons["broker"]

    first = run_cli(root, "release")
    assert first.returncode == 0, first.stderr
    assert tcp_read(tcp_url) == (200, "v1\n") and get(web_url, "/version")[1] == "v1\n"
    assert "tcp://127.0.0.1" not in first.stdout.split(" at ")[-1], "the app's URL is its first route's"

    (root / "broker" / "version").write_text("v2\n")
    (root / "web" / "version").write_text("v2\n")
    with Load(tcp_url, clients=3, fetch=tcp_read) as load, Load(web_url, clients=1) as web_load:
        second = run_cli(root, "release")
    assert second.returncode == 0, second.stderr
    assert load.failures == [] and load.ok > 10, (load.failures[:5], load.ok)
    assert web_load.failures == [], web_load.failures[:5]
    assert tcp_read(tcp_url) == (200, "v2\n")

    # v3 listens on another port: healthy to Docker, but the router cannot connect to it.
    (root / "broker" / "version").write_text("v3\n")
    (root / "broker" / "port").write_text("1884\n")
    with Load(tcp_url, clients=2, fetch=tcp_read) as load:
        failed = run_cli(root, "release")
    assert failed.returncode == 1, failed.stderr
    assert "failed its health gate" in failed.stderr, failed.stderr
    assert "broker: 0/1 healthy in the router's check, waiting on " in failed.stderr, failed.stderr
    assert "the connection is refused" in failed.stderr, failed.stderr  # in words, not HAProxy's L4CON
    assert load.failures == [], load.failures[:5]
    assert tcp_read(tcp_url) == (200, "v2\n")


def make_cert(folder: Path, name: str) -> Path:
    """A self-signed certificate for 127.0.0.1 and localhost: NAME.crt and NAME.key."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(folder / f"{name}.key"), "-out", str(folder / f"{name}.crt"),
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return folder / f"{name}.crt"


def key_body(key: Path) -> list[str]:
    """Lines of the key's base64 body: none may appear anywhere but in the router."""
    return [ln for ln in key.read_text().splitlines() if not ln.startswith("-----")][1:4]


class HTTPS:
    def __init__(self, cafiles: list[Path]) -> None:
        self.cadata = "".join(cafile.read_text() for cafile in cafiles)
        self.context = ssl.create_default_context(cadata=self.cadata)

    def get(self, url: str, path: str) -> tuple[int, str]:
        return get(url, path, timeout=10, context=self.context)

    def served(self, url: str) -> tuple[str, str | None]:
        """(SHA-1 of the certificate served, the protocol ALPN chose when h2 is offered)."""
        host, port = url.removeprefix("https://").split(":")
        context = ssl.create_default_context()
        context.load_verify_locations(cadata=self.cadata)
        context.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection((host, int(port)), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            return hashlib.sha1(der).hexdigest().upper(), tls.selected_alpn_protocol()


def fingerprint(cert: Path) -> str:
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha1", "-in", str(cert)],
                         capture_output=True, text=True, check=True).stdout
    return out.split("=", 1)[1].strip().replace(":", "")


def test_https_with_a_test_made_certificate_redirects_http_serves_h2_and_rotates_without_a_reload(
        tmp_path: Path, engine, app_name: str) -> None:
    root = tmp_path / "app"
    write_web(root / "web", {"cgi-bin/ok": "#!/bin/sh\necho ok\n"})
    certs = root / "tls"
    first_cert, second_cert = make_cert(certs, "first"), make_cert(certs, "second")
    (certs / "site.crt").write_bytes(first_cert.read_bytes())
    (certs / "site.key").write_bytes((certs / "first.key").read_bytes())
    https_port, http_port = free_port(), free_port()
    (root / "compose.yaml").write_text(textwrap.dedent(f"""\
        name: {app_name}
        services:
          web:
            build: ./web
            ports: ["127.0.0.1:{https_port}:8000"]
        x-immutdock:
          router:
            tls: {{cert: tls/site.crt, key: tls/site.key}}
            redirect: "127.0.0.1:{http_port}"
        """))
    url = f"https://127.0.0.1:{https_port}"
    client = HTTPS([first_cert, second_cert])
    outputs: list[str] = []
    try:
        first = run_cli(root, "release")
        outputs += [first.stdout, first.stderr]
        assert first.returncode == 0, first.stderr
        assert f"is live on blue at {url}" in first.stdout
        assert client.get(url, "/version") == (200, "v1\n")
        assert client.served(url) == (fingerprint(first_cert), "h2")
        h2 = subprocess.run(["curl", "-s", "--http2", "--cacert", str(first_cert), "-o", "/dev/null",
                             "-w", "%{http_version}", f"{url}/version"], capture_output=True, text=True)
        assert h2.stdout == "2", (h2.stdout, h2.stderr)
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
        conn.request("GET", "/version?x=1", headers={"Host": f"127.0.0.1:{http_port}"})
        redirect = conn.getresponse()
        assert (redirect.status, redirect.getheader("Location")) == (301, f"{url}/version?x=1")
        conn.close()

        (root / "web" / "version").write_text("v2\n")
        with Load(url, clients=3, fetch=client.get) as load:
            second = run_cli(root, "release", "--verbose")
        outputs += [second.stdout, second.stderr]
        assert second.returncode == 0, second.stderr
        assert load.failures == [] and load.ok > 10, (load.failures[:5], load.ok)

        # A renewed certificate: the next release swaps it in at run time, no connection dropped.
        (certs / "site.crt").write_bytes(second_cert.read_bytes())
        (certs / "site.key").write_bytes((certs / "second.key").read_bytes())
        with Load(url, clients=3, fetch=client.get) as load:
            renewed = run_cli(root, "release", "--json")
        outputs += [renewed.stdout, renewed.stderr]
        assert renewed.returncode == 0, renewed.stderr
        assert json_out(renewed)["outcome"] == "noop" and "new certificate" in json_out(renewed)["message"]
        assert load.failures == [] and load.ok > 5, (load.failures[:5], load.ok)
        assert client.served(url)[0] == fingerprint(second_cert)
        assert client.get(url, "/version") == (200, "v2\n")

        # A certificate that cannot be read: one line naming the key, nothing changed.
        (root / "compose.yaml").write_text((root / "compose.yaml").read_text().replace("tls/site.key", "tls/gone.key"))
        bad = run_cli(root, "release")
        outputs += [bad.stdout, bad.stderr]
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert "x-immutdock.router.tls.key: cannot read tls/gone.key" in bad.stderr
        assert client.served(url)[0] == fingerprint(second_cert)

        status = run_cli(root, "status", "--json")
        outputs += [status.stdout, status.stderr]
        # Key material is in the router's files only: no label, environment, record or output holds it.
        secrets = key_body(certs / "first.key") + key_body(certs / "second.key")
        seen = "\n".join(outputs)
        for c in engine.containers.list(all=True, filters={"label": f"io.immutdock.app={app_name}"}):
            seen += json.dumps(c.labels) + json.dumps(c.attrs["Config"]["Env"])
        for v in engine.volumes.list(filters={"label": f"io.immutdock.app={app_name}"}):
            seen += json.dumps(v.attrs.get("Labels"))
        leaked = [line for line in secrets if line in seen]
        assert leaked == [], "key material leaked"
    finally:
        cleanup(app_name)
