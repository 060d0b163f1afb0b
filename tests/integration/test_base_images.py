"""The Debian base the tests, the examples and the benchmarks build on is what users pull:
debian:bookworm-slim, slim and minimal as the official image is. Where it cannot be pulled,
.ci/base-images makes a stand-in with debootstrap; a stand-in that kept docs, translations or
apt's package caches would make every `apt-get install` layer here tens of MB bigger than on a
user's machine, and every figure about building, shipping and unpacking images wrong."""

from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.engine

DEBIAN = "debian:bookworm-slim"


def _in_base(script: str) -> str:
    proc = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", DEBIAN, "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_apt_in_the_debian_base_keeps_no_package_cache_in_a_layer(engine: object) -> None:
    """The official image's apt configuration: no pkgcache.bin or srcpkgcache.bin (39 MB each on
    bookworm), downloaded .deb files removed after every install."""
    config = _in_base("apt-config dump Dir::Cache::pkgcache Dir::Cache::srcpkgcache DPkg::Post-Invoke")
    assert 'Dir::Cache::pkgcache "";' in config, config
    assert 'Dir::Cache::srcpkgcache "";' in config, config
    assert "/var/cache/apt/*.bin" in config and "/var/cache/apt/archives/*.deb" in config, config


def test_the_debian_base_is_slim(engine: object) -> None:
    """No docs but the copyright files, no translations or man pages, now or after an install
    (dpkg's path excludes); bookworm's updates in its sources; about 75 MB, as the official image."""
    left = _in_base("for d in /usr/share/doc /usr/share/locale /usr/share/man /usr/share/info; do "
                    "[ ! -d $d ] || find $d -type f ! -name copyright ! -name locale.alias; done")
    assert left == "", left[:500]
    # Kept as in the official image: the man sections' folders (update-alternatives links man
    # pages into them), and a package's copyright reached through its docs' symlink.
    assert _in_base("ls -d /usr/share/man/man1 /usr/share/man/man8 && ls /usr/share/doc/libgcc-s1/copyright").split() \
        == ["/usr/share/man/man1", "/usr/share/man/man8", "/usr/share/doc/libgcc-s1/copyright"]
    excludes = _in_base("cat /etc/dpkg/dpkg.cfg.d/*")
    for folder in ("doc", "locale", "man", "info"):
        assert f"path-exclude /usr/share/{folder}/*" in excludes, excludes
    sources = _in_base("cat /etc/apt/sources.list.d/debian.sources")
    assert "Suites: bookworm bookworm-updates" in sources, sources
    size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", DEBIAN], capture_output=True,
                              text=True, check=True).stdout)
    assert size < 90_000_000, size
