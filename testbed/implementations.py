"""Implementation descriptors: one piece of software in a role, at one version.

An implementation is written ``name@version``. Real implementations come from a
Debian suite, so the same folder under ``containers/`` builds each version by taking
the suite as a build argument; the version listed here is the one that suite ships,
and the testbed reads the installed version back from the running container.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from testbed import __version__
from testbed.errors import UsageError
from testbed.images import ImageSpec

__all__ = [
    "DEFAULT_IMPLEMENTATIONS",
    "IMPLEMENTATIONS",
    "Implementation",
    "Role",
    "resolve_implementations",
    "select_implementations",
    "split_names",
]


class Role(enum.StrEnum):
    """The function of a service in a workflow."""

    ISSUER = "issuer"
    STORAGE = "storage"
    TRANSFER = "transfer"
    COMPUTE = "compute"
    VALIDATOR = "validator"
    CLIENT = "client"


@dataclass(frozen=True)
class Implementation:
    """One implementation at one version, and how to build and run it."""

    name: str
    version: str
    role: Role
    # None for implementations that run inside the testbed's own process.
    image: ImageSpec | None
    driver: str
    description: str
    capabilities: frozenset[str] = field(default_factory=frozenset)
    aliases: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


def _xrootd(version: str, suite: str) -> Implementation:
    return Implementation(
        name="xrootd",
        version=version,
        role=Role.STORAGE,
        image=ImageSpec("xrootd", suite=suite),
        driver="xrootd",
        description=f"XRootD with XrdHttp and the SciTokens plugin, Debian {suite}",
        capabilities=frozenset({"https", "scitokens", "wlcg", "http-tpc"}),
        aliases=(f"xrootd@{suite}",),
    )


def _scitokens_cpp(version: str, suite: str) -> Implementation:
    return Implementation(
        name="scitokens-cpp",
        version=version,
        role=Role.VALIDATOR,
        image=ImageSpec("scitokens-cpp", suite=suite),
        driver="scitokens-cpp",
        description=f"scitokens-cpp's scitokens-test-access, Debian {suite}",
        capabilities=frozenset({"scitokens", "wlcg"}),
        aliases=(f"scitokens-cpp@{suite}",),
    )


def _scitokens_python(version: str) -> Implementation:
    return Implementation(
        name="scitokens-python",
        version=version,
        role=Role.VALIDATOR,
        image=ImageSpec(
            "scitokens-python",
            suite="bookworm",
            requirements=f"requirements-{version}.txt",
            build_args={"SCITOKENS_VERSION": version},
        ),
        driver="scitokens-python",
        description=f"scitokens Python library {version} (PyPI), Enforcer.test",
        capabilities=frozenset({"scitokens", "wlcg"}),
    )


IMPLEMENTATIONS: dict[str, Implementation] = {
    impl.key: impl
    for impl in (
        Implementation(
            name="reference-issuer",
            version=__version__,
            role=Role.ISSUER,
            image=ImageSpec("reference-issuer", requirements="requirements.txt"),
            driver="reference-issuer",
            description="the testbed's own OAuth2 issuer (client credentials, minting)",
            capabilities=frozenset({"client-credentials", "mint", "discovery"}),
            aliases=("reference-issuer",),
        ),
        Implementation(
            name="gfal2",
            version="2.21.3",
            role=Role.CLIENT,
            image=ImageSpec("gfal2", suite="bookworm"),
            driver="gfal2",
            description="gfal-copy with the gfal2 http plugin and davix, bookworm",
            capabilities=frozenset({"http-tpc"}),
            aliases=("gfal2@bookworm",),
        ),
        Implementation(
            name="reference-validator",
            version=__version__,
            role=Role.VALIDATOR,
            image=None,
            driver="reference-validator",
            description="the testbed's strict validator, driven by the profile data",
            capabilities=frozenset({"profiles"}),
            aliases=("reference-validator",),
        ),
        _xrootd("5.5.3", "bookworm"),
        _xrootd("5.8.1", "trixie"),
        _xrootd("6.2.0", "sid"),
        _scitokens_cpp("0.7.3", "bookworm"),
        _scitokens_cpp("1.1.3", "trixie"),
        _scitokens_cpp("1.4.1", "sid"),
        _scitokens_python("1.9.7"),
        _scitokens_python("1.8.1"),
    )
}

DEFAULT_IMPLEMENTATIONS: tuple[str, ...] = (
    f"reference-issuer@{__version__}",
    "xrootd@5.5.3",
    "xrootd@5.8.1",
    "xrootd@6.2.0",
    "gfal2@2.21.3",
    f"reference-validator@{__version__}",
    "scitokens-cpp@0.7.3",
    "scitokens-cpp@1.1.3",
    "scitokens-cpp@1.4.1",
    "scitokens-python@1.9.7",
    "scitokens-python@1.8.1",
)


def resolve_implementations(names: Iterable[str]) -> list[Implementation]:
    """Map names or aliases to implementations; raise UsageError listing valid names.

    A bare name such as ``xrootd`` selects every version of it.
    """
    by_alias = {
        alias: impl for impl in IMPLEMENTATIONS.values() for alias in impl.aliases
    }
    selected: dict[str, Implementation] = {}
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        matches: list[Implementation]
        if name in IMPLEMENTATIONS:
            matches = [IMPLEMENTATIONS[name]]
        elif name in by_alias:
            matches = [by_alias[name]]
        else:
            matches = [impl for impl in IMPLEMENTATIONS.values() if impl.name == name]
        if not matches:
            valid = ", ".join(IMPLEMENTATIONS)
            raise UsageError(
                f"unknown implementation {name!r}; valid implementations: {valid}"
            )
        for impl in matches:
            selected[impl.key] = impl
    return list(selected.values())


def split_names(values: Iterable[str]) -> list[str]:
    """Split option values, each of which may list comma-separated names."""
    return [
        part.strip() for value in values for part in value.split(",") if part.strip()
    ]


def select_implementations(names: list[str]) -> list[Implementation]:
    """Resolve ``names``, or the default matrix when empty, adding the issuer."""
    implementations = resolve_implementations(names or DEFAULT_IMPLEMENTATIONS)
    if not any(impl.role is Role.ISSUER for impl in implementations):
        issuer = resolve_implementations([DEFAULT_IMPLEMENTATIONS[0]])
        implementations = issuer + implementations
    return implementations
