"""Token profiles as data: one TOML file per profile under ``testbed/data/profiles``.

A profile file has these tables (unknown tables or keys are rejected):

- top level: ``name`` (the profile's id, equal to the file's stem), ``title``,
  ``specification`` (a URL).
- ``[header]``: ``algorithms`` (accepted JWS algorithms), ``default_algorithm``,
  ``required`` (header fields a token must carry), ``fields`` (fixed header fields
  the issuer writes, for example ``typ``).
- ``[claims]``: ``required`` (claim names), ``fixed`` (claims with a fixed value,
  such as the version claim), ``version_claim``.
- ``[lifetime]``: ``default`` and ``maximum`` in seconds, ``expiry_leeway`` in
  seconds (how long past ``exp`` a resource server should still accept a token).
- ``[audience]``: ``any`` (the audience value that means every relying party).
- ``[scopes]``: ``read``, ``create``, ``modify`` (the scope names for those storage
  operations), optionally ``stage``, and ``path_required``.
"""

from __future__ import annotations

import logging
import re
import time
import tomllib
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from testbed.errors import ConfigurationError, UsageError

__all__ = ["PROFILES_DIR", "Profile", "get_profile", "load_profile", "load_profiles"]

logger = logging.getLogger(__name__)

PROFILES_DIR = Path(__file__).parent / "data" / "profiles"
# The reference issuer holds RS256 and ES256 keys; profiles may name only these.
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256"})
_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")

_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "": {"name": str, "title": str, "specification": str},
    "header": {
        "algorithms": list,
        "default_algorithm": str,
        "required": list,
        "fields": dict,
    },
    "claims": {"required": list, "fixed": dict, "version_claim": str},
    "lifetime": {"default": int, "maximum": int, "expiry_leeway": int},
    "audience": {"any": str},
    "scopes": {"read": str, "create": str, "modify": str, "path_required": bool},
}
# Fields that a profile may leave out.
_OPTIONAL: dict[str, dict[str, type]] = {"scopes": {"stage": str}}


@dataclass(frozen=True)
class Profile:
    """A token specification: required header fields and claims, lifetimes, scopes."""

    name: str
    title: str
    specification: str
    algorithms: tuple[str, ...]
    default_algorithm: str
    required_header: tuple[str, ...]
    header_fields: dict[str, Any]
    required_claims: tuple[str, ...]
    fixed_claims: dict[str, Any]
    version_claim: str
    default_lifetime: int
    maximum_lifetime: int
    expiry_leeway: int
    any_audience: str
    scope_names: dict[str, str]
    path_required: bool
    source: Path

    def scope(self, operation: str, path: str) -> str:
        """Return the scope that grants ``operation`` on ``path``."""
        try:
            name = self.scope_names[operation]
        except KeyError:
            valid = ", ".join(sorted(self.scope_names))
            raise UsageError(
                f"profile {self.name} has no scope for operation {operation!r}; "
                f"valid operations: {valid}"
            ) from None
        return f"{name}:{path}"

    def baseline_claims(
        self,
        issuer: str,
        audience: str | list[str],
        scope: str,
        subject: str = "testbed-subject",
        now: int | None = None,
        lifetime: int | None = None,
    ) -> dict[str, Any]:
        """Build the claims of a valid access token of this profile."""
        issued_at = int(time.time()) if now is None else now
        claims: dict[str, Any] = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + (lifetime or self.default_lifetime),
            "jti": str(uuid.uuid4()),
            "scope": scope,
        }
        claims.update(self.fixed_claims)
        return claims

    def issuer_settings(self) -> dict[str, Any]:
        """Return the profile section of the reference issuer's configuration."""
        return {
            "header": dict(self.header_fields),
            "claims": dict(self.fixed_claims),
            "lifetime": self.default_lifetime,
            "max_lifetime": self.maximum_lifetime,
            "default_audience": self.any_audience,
            "alg": self.default_algorithm,
        }


def _fail(path: Path, field: str, problem: str, fix: str) -> ConfigurationError:
    return ConfigurationError(f"{path}: field {field!r} {problem}; {fix}")


def _check_tables(path: Path, data: dict[str, Any]) -> None:
    for key in data:
        if key not in _SCHEMA and key not in _SCHEMA[""]:
            valid = ", ".join(sorted(k for k in _SCHEMA if k))
            raise _fail(path, key, "is not a known table", f"use one of: {valid}")
    for table, fields in _SCHEMA.items():
        section = data if table == "" else data.get(table)
        if section is None:
            raise _fail(path, table, "is missing", f"add a [{table}] table")
        if not isinstance(section, dict):
            raise _fail(path, table, "is not a table", f"write it as [{table}]")
        optional = _OPTIONAL.get(table, {})
        for field, expected in {**fields, **optional}.items():
            label = field if table == "" else f"{table}.{field}"
            if field not in section and field in optional:
                continue
            if field not in section:
                raise _fail(
                    path, label, "is missing", "add it (see testbed/profiles.py)"
                )
            value = section[field]
            if isinstance(value, bool) and expected is int:
                raise _fail(
                    path, label, "must be an integer", "write a number of seconds"
                )
            if not isinstance(value, expected):
                type_name = getattr(expected, "__name__", str(expected))
                raise _fail(
                    path, label, f"must be of type {type_name}", f"got {value!r}"
                )
        if table:
            for field in section:
                if field not in fields and field not in optional:
                    valid = ", ".join([*fields, *optional])
                    raise _fail(
                        path,
                        f"{table}.{field}",
                        "is not a known field",
                        f"use one of: {valid}",
                    )


def load_profile(path: Path) -> Profile:
    """Load and validate one profile file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigurationError(
            f"{path}: cannot read the profile file: {exc}"
        ) from exc

    _check_tables(path, data)
    if data["name"] != path.stem:
        raise _fail(
            path,
            "name",
            f"is {data['name']!r} but the file is {path.name}",
            "make them equal",
        )
    header, claims, lifetime = data["header"], data["claims"], data["lifetime"]
    if not _NAME.match(data["name"]):
        raise _fail(
            path,
            "name",
            "must be lower-case letters, digits, dots and dashes",
            f"got {data['name']!r}",
        )
    for label, values in (
        ("header.algorithms", header["algorithms"]),
        ("header.required", header["required"]),
        ("claims.required", claims["required"]),
    ):
        if not values or not all(isinstance(v, str) and v for v in values):
            raise _fail(path, label, "must be a non-empty list of strings", "")
    unsupported = sorted(set(header["algorithms"]) - ASYMMETRIC_ALGORITHMS)
    if unsupported:
        raise _fail(
            path,
            "header.algorithms",
            f"names {', '.join(unsupported)}",
            "tokens must be signed with an asymmetric algorithm: use "
            + ", ".join(sorted(ASYMMETRIC_ALGORITHMS)),
        )
    if lifetime["expiry_leeway"] < 0:
        raise _fail(path, "lifetime.expiry_leeway", "must not be negative", "")
    if header["default_algorithm"] not in header["algorithms"]:
        raise _fail(
            path,
            "header.default_algorithm",
            "is not in header.algorithms",
            "add it there",
        )
    if not 0 < lifetime["default"] <= lifetime["maximum"]:
        raise _fail(
            path,
            "lifetime.default",
            "must be positive and at most lifetime.maximum",
            "",
        )
    if claims["version_claim"] not in claims["fixed"]:
        raise _fail(
            path, "claims.version_claim", "has no value in claims.fixed", "add it"
        )

    return Profile(
        name=data["name"],
        title=data["title"],
        specification=data["specification"],
        algorithms=tuple(header["algorithms"]),
        default_algorithm=header["default_algorithm"],
        required_header=tuple(header["required"]),
        header_fields=dict(header["fields"]),
        required_claims=tuple(claims["required"]),
        fixed_claims=dict(claims["fixed"]),
        version_claim=claims["version_claim"],
        default_lifetime=lifetime["default"],
        maximum_lifetime=lifetime["maximum"],
        expiry_leeway=lifetime["expiry_leeway"],
        any_audience=data["audience"]["any"],
        scope_names={
            op: data["scopes"][op]
            for op in ("read", "create", "modify", "stage")
            if op in data["scopes"]
        },
        path_required=data["scopes"]["path_required"],
        source=path,
    )


@cache
def load_profiles(directory: Path = PROFILES_DIR) -> dict[str, Profile]:
    """Load every ``*.toml`` profile in ``directory``, keyed by name."""
    profiles = {}
    for path in sorted(directory.glob("*.toml")):
        profile = load_profile(path)
        profiles[profile.name] = profile
    if not profiles:
        raise ConfigurationError(f"no profile files (*.toml) found in {directory}")
    logger.debug("loaded profiles %s from %s", ", ".join(profiles), directory)
    return profiles


def get_profile(name: str) -> Profile:
    """Return the profile ``name``; raise UsageError listing the valid names."""
    profiles = load_profiles()
    if name not in profiles:
        raise UsageError(
            f"unknown profile {name!r}; valid profiles: {', '.join(profiles)}"
        )
    return profiles[name]
