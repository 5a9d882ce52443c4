"""Tests of testbed.images: context hashes, the host's mirror and the build cache.

No test talks to Docker: the builder gets a fake client, and host_mirror reads apt
files from a temporary directory through a patched ``Path``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest

from testbed import images
from testbed.errors import ConfigurationError, ImageBuildError
from testbed.images import ImageBuilder, ImageSpec, context_hash, host_mirror

MIRROR = "http://deb.debian.org/debian"


@pytest.fixture
def context(tmp_path: Path) -> Path:
    directory = tmp_path / "context"
    directory.mkdir()
    (directory / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    (directory / "entrypoint.sh").write_text("#!/bin/sh\n", encoding="utf-8")
    (directory / "lib").mkdir()
    (directory / "lib" / "module.py").write_text("X = 1\n", encoding="utf-8")
    return directory


@pytest.fixture
def apt_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Redirect host_mirror's /etc/apt paths into ``tmp_path`` and return that copy."""
    real_path = Path

    def rooted(*parts: Any) -> Path:
        path = real_path(*parts)
        if path.is_absolute() and path.parts[1:3] == ("etc", "apt"):
            return tmp_path.joinpath(*path.parts[1:])
        return path

    monkeypatch.setattr(images, "Path", rooted)
    root = tmp_path / "etc" / "apt"
    (root / "sources.list.d").mkdir(parents=True)
    return root


def test_context_hash_is_stable(context: Path) -> None:
    assert context_hash(context, {}) == context_hash(context, {})


def test_context_hash_length(context: Path) -> None:
    assert len(context_hash(context, {})) == 16


def test_context_hash_changes_with_content(context: Path) -> None:
    before = context_hash(context, {})
    (context / "lib" / "module.py").write_text("X = 2\n", encoding="utf-8")
    assert context_hash(context, {}) != before


def test_context_hash_changes_with_mode(context: Path) -> None:
    before = context_hash(context, {})
    (context / "entrypoint.sh").chmod(0o755)
    assert context_hash(context, {}) != before


def test_context_hash_ignores_read_bits(context: Path) -> None:
    before = context_hash(context, {})
    (context / "entrypoint.sh").chmod(0o600)
    assert context_hash(context, {}) == before


def test_context_hash_changes_with_name(context: Path) -> None:
    before = context_hash(context, {})
    (context / "lib" / "module.py").rename(context / "lib" / "other.py")
    assert context_hash(context, {}) != before


def test_context_hash_changes_with_new_file(context: Path) -> None:
    before = context_hash(context, {})
    (context / "extra.cfg").write_text("", encoding="utf-8")
    assert context_hash(context, {}) != before


def test_context_hash_ignores_pycache(context: Path) -> None:
    before = context_hash(context, {})
    cache = context / "lib" / "__pycache__"
    cache.mkdir()
    (cache / "module.cpython-311.pyc").write_bytes(b"\0compiled")
    assert context_hash(context, {}) == before


def test_context_hash_ignores_tests_folder(context: Path) -> None:
    before = context_hash(context, {})
    (context / "tests").mkdir()
    (context / "tests" / "test_x.py").write_text("", encoding="utf-8")
    assert context_hash(context, {}) == before


def test_context_hash_changes_with_extra(context: Path) -> None:
    assert context_hash(context, {"BASE": "a"}) != context_hash(context, {"BASE": "b"})


def test_context_hash_extra_order_irrelevant(context: Path) -> None:
    first = context_hash(context, {"A": "1", "B": "2"})
    assert first == context_hash(context, {"B": "2", "A": "1"})


def test_image_spec_names() -> None:
    spec = ImageSpec("xrootd", suite="trixie")
    assert spec.repository == "testbed/xrootd"
    assert spec.context_dir == images.CONTAINERS_DIR / "xrootd"


def test_host_mirror_deb822(apt_root: Path) -> None:
    (apt_root / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n"
        f"URIs: {MIRROR}\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "URIs: http://deb.debian.org/debian-security\n"
        "Suites: bookworm-security\n",
        encoding="utf-8",
    )
    assert host_mirror() == MIRROR


def test_host_mirror_deb822_skips_security_first(apt_root: Path) -> None:
    (apt_root / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.debian.org/debian-security\n\n"
        f"Types: deb\nURIs: {MIRROR}\n",
        encoding="utf-8",
    )
    assert host_mirror() == MIRROR


def test_host_mirror_one_line_list(apt_root: Path) -> None:
    (apt_root / "sources.list.d" / "mirror.list").write_text(
        "# local mirror\ndeb http://mirror.test/debian bookworm main\n",
        encoding="utf-8",
    )
    assert host_mirror() == "http://mirror.test/debian"


def test_host_mirror_list_with_option(apt_root: Path) -> None:
    (apt_root / "sources.list").write_text(
        "deb [trusted=yes] http://mirror.test/debian bookworm main\n",
        encoding="utf-8",
    )
    assert host_mirror() == "http://mirror.test/debian"


def test_host_mirror_list_with_two_options(apt_root: Path) -> None:
    (apt_root / "sources.list").write_text(
        "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        f"{MIRROR} bookworm main\n",
        encoding="utf-8",
    )
    assert host_mirror() == MIRROR


def test_host_mirror_prefers_sources_list(apt_root: Path) -> None:
    (apt_root / "sources.list").write_text(
        "deb http://first.test/debian bookworm main\n", encoding="utf-8"
    )
    (apt_root / "sources.list.d" / "debian.sources").write_text(
        f"Types: deb\nURIs: {MIRROR}\n", encoding="utf-8"
    )
    assert host_mirror() == "http://first.test/debian"


def test_host_mirror_ignores_commented_and_other(apt_root: Path) -> None:
    (apt_root / "sources.list").write_text(
        "# deb http://commented.test/debian bookworm main\n"
        "deb-src http://source.test/debian bookworm main\n"
        "deb http://packages.test/ubuntu jammy main\n",
        encoding="utf-8",
    )
    (apt_root / "sources.list.d" / "late.list").write_text(
        f"deb {MIRROR} bookworm main\n", encoding="utf-8"
    )
    assert host_mirror() == MIRROR


def test_host_mirror_none_found(apt_root: Path) -> None:
    with pytest.raises(ConfigurationError, match="TESTBED_DEBIAN_MIRROR"):
        host_mirror()


class FakeImages:
    """The ``images`` collection of a Docker client, holding a set of tags."""

    def __init__(self, tags: set[str]) -> None:
        self.tags = set(tags)
        self.pulls: list[tuple[str, str]] = []
        self.pull_error: Exception | None = None

    def get(self, tag: str) -> SimpleNamespace:
        if tag not in self.tags:
            raise docker.errors.ImageNotFound(tag)
        return SimpleNamespace(id=f"sha256:{abs(hash(tag)):x}")

    def pull(self, repository: str, tag: str) -> None:
        self.pulls.append((repository, tag))
        if self.pull_error is not None:
            raise self.pull_error
        self.tags.add(f"{repository}:{tag}")


def _builder(tags: set[str]) -> tuple[ImageBuilder, FakeImages]:
    fake = FakeImages(tags)
    return ImageBuilder(SimpleNamespace(images=fake)), fake


def test_base_image_uses_existing() -> None:
    builder, fake = _builder({"debian:bookworm-slim"})
    assert builder.base_image("bookworm") == "debian:bookworm-slim"
    assert fake.pulls == []


def test_base_image_uses_bootstrapped() -> None:
    builder, _ = _builder({"testbed-base:trixie"})
    assert builder.base_image("trixie") == "testbed-base:trixie"


def test_base_image_pulls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTBED_BASE_SOURCE", "pull")
    builder, fake = _builder(set())
    assert builder.base_image("bookworm") == "debian:bookworm-slim"
    assert fake.pulls == [("debian", "bookworm-slim")]


def test_base_image_pull_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTBED_BASE_SOURCE", "pull")
    builder, fake = _builder(set())
    fake.pull_error = docker.errors.APIError("no registry")
    with pytest.raises(ImageBuildError, match="cannot pull debian:bookworm-slim"):
        builder.base_image("bookworm")


def test_base_image_invalid_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTBED_BASE_SOURCE", "download")
    builder, _ = _builder(set())
    with pytest.raises(ConfigurationError, match="invalid TESTBED_BASE_SOURCE"):
        builder.base_image("bookworm")


def test_bootstrap_without_mmdebstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTBED_BASE_SOURCE", "bootstrap")
    monkeypatch.setattr(images.shutil, "which", lambda name: None)
    builder, fake = _builder(set())
    with pytest.raises(ImageBuildError, match="mmdebstrap is not installed"):
        builder.base_image("bookworm")
    assert fake.pulls == []


def test_build_missing_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "CONTAINERS_DIR", tmp_path)
    builder, _ = _builder({"debian:bookworm-slim"})
    with pytest.raises(ConfigurationError, match="no build context"):
        builder.build(ImageSpec("absent"))


def test_build_reuses_tagged_image(
    context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "CONTAINERS_DIR", context.parent)
    builds: list[str] = []
    monkeypatch.setattr(
        ImageBuilder, "_docker_build", lambda self, ctx, tag, args: builds.append(tag)
    )
    builder, fake = _builder({"debian:bookworm-slim"})
    tag = builder.build(ImageSpec("context"))
    assert tag.startswith("testbed/context:bookworm-")
    assert builds == [tag]

    fake.tags.add(tag)
    assert builder.build(ImageSpec("context")) == tag
    assert builds == [tag]


def test_build_tag_follows_build_args(
    context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "CONTAINERS_DIR", context.parent)
    monkeypatch.setattr(ImageBuilder, "_docker_build", lambda *args: None)
    builder, _ = _builder({"debian:bookworm-slim"})
    first = builder.build(ImageSpec("context", build_args={"X": "1"}))
    second = builder.build(ImageSpec("context", build_args={"X": "2"}))
    assert first != second


def test_wheelhouse_unknown_suite(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pyjwt\n", encoding="utf-8")
    builder, _ = _builder(set())
    with pytest.raises(ConfigurationError, match="no Python version known"):
        builder.wheelhouse(requirements, tmp_path / "wheels", "buster")


def test_build_wraps_docker_errors(
    context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "CONTAINERS_DIR", context.parent)
    builder, fake = _builder(set())

    def unreachable(tag: str) -> None:
        raise docker.errors.DockerException("engine went away")

    fake.get = unreachable
    with pytest.raises(ImageBuildError, match="building testbed/context failed"):
        builder.build(ImageSpec("context"))


class FakeApi:
    """The low-level API of a Docker client: records imports into ``images``."""

    def __init__(self, fake_images: FakeImages, produce: bool = True) -> None:
        self.images = fake_images
        self.produce = produce
        self.imports: list[tuple[bytes, str, str]] = []

    def import_image_from_file(self, path: str, repository: str, tag: str) -> None:
        self.imports.append((Path(path).read_bytes(), repository, tag))
        if self.produce:
            self.images.tags.add(f"{repository}:{tag}")


@pytest.fixture
def bootstrap_env(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Make base_image bootstrap with a fake mmdebstrap and return its commands."""
    commands: list[list[str]] = []

    def fake_run(command: list[str], stdout: Any, **kwargs: Any) -> None:
        commands.append(command)
        stdout.write(b"rootfs tarball")

    monkeypatch.setenv("TESTBED_BASE_SOURCE", "bootstrap")
    monkeypatch.setenv("TESTBED_DEBIAN_MIRROR", "http://mirror.test/debian")
    monkeypatch.setattr(images.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(images.subprocess, "run", fake_run)
    return commands


def _bootstrap_builder(produce: bool = True) -> tuple[ImageBuilder, FakeApi]:
    fake = FakeImages(set())
    api = FakeApi(fake, produce)
    return ImageBuilder(SimpleNamespace(images=fake, api=api)), api


def test_bootstrap_imports_tarball(bootstrap_env: list[list[str]]) -> None:
    builder, api = _bootstrap_builder()
    assert builder.base_image("bookworm") == "testbed-base:bookworm"
    assert api.imports == [(b"rootfs tarball", "testbed-base", "bookworm")]


def test_bootstrap_command(bootstrap_env: list[list[str]]) -> None:
    builder, _ = _bootstrap_builder()
    builder.base_image("bookworm")
    command = bootstrap_env[0]
    assert command[0] == "mmdebstrap"
    assert command[-3:] == [
        "bookworm",
        "-",
        "deb http://mirror.test/debian bookworm main",
    ]
    assert not any("Check-Valid-Until" in arg for arg in command)


def test_bootstrap_sid_skips_valid_until(bootstrap_env: list[list[str]]) -> None:
    builder, _ = _bootstrap_builder()
    builder.base_image("sid")
    assert any("Check-Valid-Until" in arg for arg in bootstrap_env[0])


def test_bootstrap_import_without_image(bootstrap_env: list[list[str]]) -> None:
    builder, _ = _bootstrap_builder(produce=False)
    with pytest.raises(ImageBuildError, match="produced no image"):
        builder.base_image("bookworm")


def test_bootstrap_failure_keeps_log_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_run(command: list[str], stderr: Any, **kwargs: Any) -> None:
        stderr.write(b"E: cannot reach the mirror\n")
        raise images.subprocess.CalledProcessError(1, command)

    monkeypatch.setenv("TESTBED_BASE_SOURCE", "bootstrap")
    monkeypatch.setenv("TESTBED_DEBIAN_MIRROR", "http://mirror.test/debian")
    monkeypatch.setattr(images.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(images.subprocess, "run", failing_run)
    builder, _ = _bootstrap_builder()
    with pytest.raises(ImageBuildError, match="mmdebstrap failed") as info:
        builder.base_image("bookworm")
    assert info.value.log_tail == "E: cannot reach the mirror"
