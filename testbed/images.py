"""Building the testbed's images, cached by a hash of their build context.

An image is tagged ``testbed/<name>:<hash>``, where the hash covers every file of
the build context (the implementation's folder under ``containers/`` plus any
wheelhouse), the build arguments and the base image's id. When an image with that
tag exists, nothing is built.

Base images are ``debian:<suite>-slim``. Where no registry responds, the testbed
bootstraps one offline with ``mmdebstrap`` from the host's own Debian mirror and
tags it ``debian:<suite>-slim`` locally.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from testbed.errors import ConfigurationError, ImageBuildError

__all__ = [
    "CONTAINERS_DIR",
    "ImageBuilder",
    "ImageSpec",
    "context_hash",
    "host_mirror",
]

logger = logging.getLogger(__name__)

CONTAINERS_DIR = Path(__file__).resolve().parent.parent / "containers"
CACHE_DIR = Path(
    os.environ.get("TESTBED_CACHE_DIR", Path.home() / ".cache" / "testbed")
)
BUILD_TIMEOUT = 900
BOOTSTRAP_TIMEOUT = 600
LOG_TAIL_LINES = 30
# Suites whose Release file is past its Valid-Until date on some mirrors.
SUITES_WITHOUT_VALID_UNTIL = {"sid", "unstable"}
# Python version and glibc minor version of each suite's python3 and libc6.
SUITE_PYTHON = {"bookworm": ("3.11", 36), "trixie": ("3.13", 41), "sid": ("3.13", 41)}


@dataclass(frozen=True)
class ImageSpec:
    """A build request: a folder under ``containers/``, a Debian suite and extras."""

    name: str
    suite: str = "bookworm"
    build_args: dict[str, str] = field(default_factory=dict)
    requirements: str | None = (
        None  # a requirements file in the folder, for a wheelhouse
    )

    @property
    def context_dir(self) -> Path:
        return CONTAINERS_DIR / self.name

    @property
    def repository(self) -> str:
        return f"testbed/{self.name}"


def context_hash(directory: Path, extra: dict[str, str]) -> str:
    """Hash the files below ``directory`` (names, modes and contents) and ``extra``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if "__pycache__" in relative or relative.startswith("tests/"):
            continue
        digest.update(relative.encode() + b"\0")
        digest.update(oct(path.stat().st_mode & 0o111).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for key in sorted(extra):
        digest.update(f"{key}={extra[key]}\0".encode())
    return digest.hexdigest()[:16]


def host_mirror() -> str:
    """Return the URI of the Debian mirror that the host's apt configuration names."""
    candidates: list[Path] = [Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if path.suffix == ".sources" and words[:1] == ["URIs:"]:
                uri = words[1] if len(words) > 1 else ""
            elif words[:1] == ["deb"]:
                uri = _one_line_uri(words)
            else:
                continue
            if uri and "security" not in uri and "/debian" in uri:
                return uri
    raise ConfigurationError(
        "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d; "
        "set TESTBED_DEBIAN_MIRROR to the mirror's URI"
    )


def _one_line_uri(words: list[str]) -> str:
    """Return the URI of a one-line ``deb [options] URI suite ...`` entry."""
    rest = words[1:]
    if rest and rest[0].startswith("["):
        while rest and not rest[0].endswith("]"):
            rest = rest[1:]
        rest = rest[1:]
    return rest[0] if rest else ""


class ImageBuilder:
    """Builds images and base images, each at most once per process."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _image_exists(self, tag: str) -> bool:
        try:
            self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            return False
        return True

    def base_image(self, suite: str) -> str:
        """Return a local base image for ``suite``, pulling or bootstrapping it.

        ``TESTBED_BASE_SOURCE`` chooses: ``auto`` (default) tries a pull of
        ``debian:<suite>-slim`` and bootstraps on failure, ``pull`` only pulls and
        ``bootstrap`` never contacts a registry.
        """
        official, bootstrapped = f"debian:{suite}-slim", f"testbed-base:{suite}"
        with self._lock(suite):
            for tag in (official, bootstrapped):
                if self._image_exists(tag):
                    return tag
            source = os.environ.get("TESTBED_BASE_SOURCE", "auto")
            if source not in ("auto", "pull", "bootstrap"):
                raise ConfigurationError(
                    f"invalid TESTBED_BASE_SOURCE {source!r}; "
                    "use auto, pull or bootstrap"
                )
            if source in ("auto", "pull"):
                try:
                    self.client.images.pull("debian", tag=f"{suite}-slim")
                    logger.info("pulled base image %s", official)
                    return official
                except docker.errors.APIError as exc:
                    if source == "pull":
                        raise ImageBuildError(f"cannot pull {official}: {exc}") from exc
                    logger.info(
                        "no registry responded for %s; bootstrapping it", official
                    )
            self._bootstrap(suite, bootstrapped)
            return bootstrapped

    def _bootstrap(self, suite: str, tag: str) -> None:
        if shutil.which("mmdebstrap") is None:
            raise ImageBuildError(
                f"cannot build base image {tag}: no registry responded and "
                "mmdebstrap is not installed; install it (apt-get install "
                "mmdebstrap) or load the image with 'docker load'"
            )
        mirror = os.environ.get("TESTBED_DEBIAN_MIRROR") or host_mirror()
        command = ["mmdebstrap", "--variant=apt", "--quiet"]
        if suite in SUITES_WITHOUT_VALID_UNTIL:
            command.append('--aptopt=Acquire::Check-Valid-Until "false"')
        command += [suite, "-", f"deb {mirror} {suite} main"]
        started = time.monotonic()
        logger.info("bootstrapping base image %s from %s", tag, mirror)
        with tempfile.TemporaryDirectory(prefix="testbed-base-") as scratch:
            tarball, log = (
                Path(scratch) / "rootfs.tar",
                Path(scratch) / "mmdebstrap.log",
            )
            try:
                with tarball.open("wb") as out, log.open("wb") as err:
                    subprocess.run(
                        command,
                        stdout=out,
                        stderr=err,
                        check=True,
                        timeout=BOOTSTRAP_TIMEOUT,
                    )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                text = log.read_text(errors="replace").splitlines()
                raise ImageBuildError(
                    f"mmdebstrap failed for {tag}: {exc}", "\n".join(text[-20:])
                ) from exc
            repository, _, version = tag.partition(":")
            try:
                self.client.api.import_image_from_file(
                    str(tarball), repository=repository, tag=version
                )
            except docker.errors.DockerException as exc:
                raise ImageBuildError(f"docker import of {tag} failed: {exc}") from exc
            if not self._image_exists(tag):
                raise ImageBuildError(f"docker import of {tag} produced no image")
        logger.info("base image %s built in %.1f s", tag, time.monotonic() - started)

    def wheelhouse(self, requirements: Path, destination: Path, suite: str) -> None:
        """Download the wheels that ``requirements`` names into ``destination``.

        The wheels target the suite's Python and glibc, not the host's, so that
        ``pip install --no-index`` in the image finds a match.
        """
        if suite not in SUITE_PYTHON:
            raise ConfigurationError(
                f"no Python version known for Debian suite {suite!r}; "
                f"add it to SUITE_PYTHON in {__file__}"
            )
        python, glibc_minor = SUITE_PYTHON[suite]
        machine = platform.machine()
        key = hashlib.sha256(requirements.read_bytes() + f"{python}{machine}".encode())
        cache = CACHE_DIR / "wheelhouse" / key.hexdigest()[:16]
        if not (cache / ".complete").exists():
            cache.mkdir(parents=True, exist_ok=True)
            platforms = [
                f"manylinux_2_{minor}_{machine}" for minor in range(17, glibc_minor + 1)
            ]
            platforms.append(f"manylinux2014_{machine}")
            command = [
                sys.executable, "-m", "pip", "download", "--quiet",
                "--only-binary=:all:",
                "--python-version", python, "--implementation", "cp",
                *(arg for name in platforms for arg in ("--platform", name)),
                "--dest", str(cache), "-r", str(requirements),
            ]  # fmt: skip
            logger.info("building wheelhouse for %s (Python %s)", requirements, python)
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
            if result.returncode != 0:
                tail = "\n".join(result.stderr.splitlines()[-LOG_TAIL_LINES:])
                raise ImageBuildError(f"pip download failed for {requirements}", tail)
            (cache / ".complete").touch()
        shutil.copytree(cache, destination, ignore=shutil.ignore_patterns(".complete"))

    def build(self, spec: ImageSpec) -> str:
        """Build ``spec`` unless its context hash is already built; return the tag."""
        try:
            return self._build(spec)
        except docker.errors.DockerException as exc:
            raise ImageBuildError(f"building {spec.repository} failed: {exc}") from exc

    def _build(self, spec: ImageSpec) -> str:
        if not spec.context_dir.is_dir():
            raise ConfigurationError(f"no build context at {spec.context_dir}")
        base = self.base_image(spec.suite)
        base_id = self.client.images.get(base).id
        with tempfile.TemporaryDirectory(prefix=f"testbed-{spec.name}-") as scratch:
            context = Path(scratch) / "context"
            shutil.copytree(
                spec.context_dir,
                context,
                ignore=shutil.ignore_patterns("__pycache__", "tests"),
            )
            if spec.requirements:
                self.wheelhouse(
                    spec.context_dir / spec.requirements,
                    context / "wheelhouse",
                    spec.suite,
                )
            args = {"BASE": base, **spec.build_args}
            digest = context_hash(context, {**args, "base": base_id})
            tag = f"{spec.repository}:{spec.suite}-{digest}"
            with self._lock(tag):
                if self._image_exists(tag):
                    logger.debug("image %s is up to date", tag)
                    return tag
                self._docker_build(context, tag, args)
        return tag

    def _docker_build(self, context: Path, tag: str, args: dict[str, str]) -> None:
        started = time.monotonic()
        logger.info("building image %s", tag)
        log: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        # A client of its own, because a build may take longer than one API call.
        api = docker.from_env(timeout=BUILD_TIMEOUT).api
        try:
            for chunk in api.build(
                path=str(context),
                tag=tag,
                buildargs=args,
                network_mode="host",
                rm=True,
                forcerm=True,
                decode=True,
                labels={"org.wlcg-testbed.managed": "true"},
            ):
                if "stream" in chunk:
                    log.extend(
                        line for line in chunk["stream"].splitlines() if line.strip()
                    )
                if "error" in chunk:
                    log.append(chunk["error"].strip())
                    raise ImageBuildError(
                        f"docker build of {tag} failed", "\n".join(log)
                    )
        except docker.errors.APIError as exc:
            raise ImageBuildError(
                f"docker build of {tag} failed: {exc}", "\n".join(log)
            ) from exc
        finally:
            api.close()
        logger.info("image %s built in %.1f s", tag, time.monotonic() - started)
