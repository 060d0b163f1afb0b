"""Test hosts: containers running sshd and their own dockerd, on the real engine, as the
servers a user releases to over SSH (see ENGINE.md, "several hosts on one machine").

The host image is built once (tagged by its Dockerfile's hash) from Debian's packages on the
local Debian base. Each test module gets its own hosts, a HOME with its own SSH key,
known_hosts and ~/.ssh/config aliases (immutdock reads ~ from $HOME), and removes them all."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .support import free_port

HOST_DIR = Path(__file__).resolve().parent.parent / "hosts"
REGISTRY_DIR = Path(__file__).resolve().parent.parent / "registry"
LABEL = "io.immutdock.test-host"


def _image(folder: Path, name: str) -> str:
    """The image of `folder`'s Dockerfile, built when this engine has none of its files."""
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(folder.iterdir()) if f.is_file()))
    image = f"{name}:{digest.hexdigest()[:12]}"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        subprocess.run(["docker", "build", "-q", "--label", f"{LABEL}=image", "-t", image, str(folder)],
                       check=True, capture_output=True, timeout=1200)
    return image


def host_image() -> str:
    return _image(HOST_DIR, "immutdock-testhost")


def postgres_image() -> str:
    """PostgreSQL from Debian's package (tests/postgres), for the volume backup tests."""
    return _image(HOST_DIR.parent / "postgres", "immutdock-testpostgres")


@dataclass
class SshHost:
    container: str
    alias: str  # its Host alias in the test HOME's ~/.ssh/config
    ssh_port: int
    app_port: int  # the host's port 8080, published here

    @property
    def url(self) -> str:  # ssh:// form, without an alias
        return f"ssh://root@127.0.0.1:{self.ssh_port}"

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    @property
    def known_as(self) -> str:  # its name in known_hosts
        return f"[127.0.0.1]:{self.ssh_port}"

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The docker CLI on the host itself (its own engine)."""
        return subprocess.run(["docker", "exec", self.container, "docker", *args], capture_output=True, text=True,
                              check=check, timeout=timeout)

    def sh(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "exec", self.container, "sh", "-c", script], capture_output=True,
                              text=True, check=True, timeout=120)

    def pause(self, attempts: int = 10) -> None:
        """The whole host frozen: it answers nothing and its connections stay open. The cgroup
        freezer can fail to freeze a busy host in runc's time ("unable to freeze": processes keep
        appearing), so the pause is tried again; a last failure says what the engine said."""
        said = ""
        for _ in range(max(1, attempts)):
            try:
                done = subprocess.run(["docker", "pause", self.container], capture_output=True, text=True,
                                      timeout=60)
            except subprocess.TimeoutExpired:
                said = "docker pause did not answer within 60 s"
                continue
            if done.returncode == 0 or "is already paused" in done.stderr:
                return
            said = done.stderr.strip()
            time.sleep(0.5)
        raise AssertionError(f"docker pause {self.container} failed {max(1, attempts)} times: {said}")

    def host_key_line(self) -> str:
        key = self.sh("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()
        return f"{self.known_as} {key[0]} {key[1]}\n"


class SshHosts:
    """`count` hosts on a network of their own, and a HOME that knows them."""

    def __init__(self, count: int) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.network = f"ithosts-{self.tag}"
        self.home = Path(tempfile.mkdtemp(prefix="immutdock-home-"))
        self.hosts: list[SshHost] = []
        image = host_image()
        subprocess.run(["docker", "network", "create", "--label", f"{LABEL}={self.tag}", self.network],
                       check=True, capture_output=True)
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        self.key = ssh_dir / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "immutdock-test", "-f", str(self.key)],
                       check=True)
        for i in range(count):
            host = SshHost(container=f"ithost-{self.tag}-{i + 1}", alias=f"node{i + 1}-{self.tag}",
                            ssh_port=free_port(), app_port=free_port())
            subprocess.run([
                "docker", "run", "-d", "--name", host.container, "--hostname", host.container,
                "--label", f"{LABEL}={self.tag}", "--network", self.network,
                "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
                "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
                "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run",
                # Its engine's storage on a volume (not on the container's own overlay): overlay2
                # there, as on a real server; on the container's filesystem it falls back to vfs.
                "--mount", f"type=volume,dst=/var/lib/docker,volume-label={LABEL}={self.tag}",
                "-p", f"127.0.0.1:{host.ssh_port}:22", "-p", f"127.0.0.1:{host.app_port}:8080", image,
            ], check=True, capture_output=True)
            self.hosts.append(host)
        public = (ssh_dir / "id_ed25519.pub").read_text()
        for host in self.hosts:
            self._wait(host)
            subprocess.run(["docker", "exec", "-i", host.container, "sh", "-c",
                            "cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys"],
                           input=public, text=True, check=True)
        self.trust_all()
        (ssh_dir / "config").write_text("".join(
            f"Host {h.alias}\n  HostName 127.0.0.1\n  Port {h.ssh_port}\n  User root\n  IdentityFile {self.key}\n\n"
            for h in self.hosts))

    @staticmethod
    def _wait(host: SshHost, limit: float = 60) -> None:
        """Until its sshd has keys and its dockerd answers."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            ok = subprocess.run(["docker", "exec", host.container, "sh", "-c",
                                 "test -s /etc/ssh/ssh_host_ed25519_key.pub && docker info >/dev/null 2>&1"],
                                capture_output=True).returncode == 0
            if ok:
                return
            time.sleep(0.3)
        log = subprocess.run(["docker", "exec", host.container, "tail", "-5", "/var/log/dockerd.log"],
                             capture_output=True, text=True).stdout
        raise RuntimeError(f"test host {host.container} did not come up: {log}")

    def registry(self) -> str:
        """A registry (Debian's docker-registry, plain HTTP) at 127.0.0.1:PORT both here and
        on every host: published here on loopback, and forwarded from each host's loopback
        (socat) across the hosts' network; engines trust loopback registries without settings."""
        port = free_port()
        name = f"itreg-{self.tag}"
        subprocess.run(["docker", "run", "-d", "--name", name, "--label", f"{LABEL}={self.tag}", "--network",
                        self.network, "-p", f"127.0.0.1:{port}:5000", _image(REGISTRY_DIR, "immutdock-testregistry")],
                       check=True, capture_output=True)
        for host in self.hosts:
            subprocess.run(["docker", "exec", "-d", host.container, "socat",
                            f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", f"TCP:{name}:5000"], check=True)
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while any("200 OK" not in subprocess.run(
                ["docker", "exec", host.container, "sh", "-c",
                 f"printf 'GET /v2/ HTTP/1.0\\r\\n\\r\\n' | socat -t 5 - TCP:127.0.0.1:{port}"],
                capture_output=True, text=True).stdout for host in self.hosts):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test registry at {address} did not come up")
            time.sleep(0.2)
        return address

    @property
    def known_hosts(self) -> Path:
        return self.home / ".ssh" / "known_hosts"

    def trust_all(self) -> None:
        """known_hosts with every host's real key."""
        self.known_hosts.write_text("".join(h.host_key_line() for h in self.hosts))

    @property
    def env(self) -> dict[str, str]:
        """What immutdock's environment changes: this HOME, and no SSH agent of the caller's."""
        return {"HOME": str(self.home), "SSH_AUTH_SOCK": ""}

    def close(self) -> None:
        found = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL}={self.tag}"],
                               capture_output=True, text=True).stdout.split()
        if found:
            subprocess.run(["docker", "rm", "-f", "-v", *found], capture_output=True)
        subprocess.run(["docker", "network", "rm", self.network], capture_output=True)
        left = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label={LABEL}={self.tag}"],
                              capture_output=True, text=True).stdout.split()
        if left:  # a host's engine storage (removed with the host; here if that failed)
            subprocess.run(["docker", "volume", "rm", "-f", *left], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)
