"""Token profiles as data: one TOML file per profile under ``testbed/data/profiles``.

A profile file has these tables; unknown tables or keys are rejected, and fields
marked optional may be left out:

- top level: ``name`` (the profile's id, equal to the file's stem), ``title``,
  ``specification`` (a URL); optional ``status`` (``published`` or ``draft``) and
  ``extends`` (the name of a profile whose tables this file starts from; its own
  tables replace the parent's field by field).
- ``[header]``: ``algorithms`` (accepted JWS algorithms), ``default_algorithm``,
  ``required`` (header fields a token must carry), ``fields`` (fixed header fields
  the issuer writes, for example ``typ``); optional ``typ`` (the accepted ``typ``
  values; when set, a token without one of them is invalid).
- ``[claims]``: ``required`` (claim names), ``fixed`` (claims with a fixed value,
  such as the version claim); optional ``version_claim``, ``accepted_versions``
  (a regular expression that the version claim must match; by default only the
  fixed value) and ``known`` (when set, every claim is critical and a token with
  a claim outside this list is invalid).
- ``[lifetime]``: ``default`` and ``maximum`` in seconds, ``expiry_leeway`` in
  seconds (how long past ``exp`` a resource server should still accept a token).
- ``[audience]``: optional ``any`` (the audience value that means every relying
  party) and ``required`` (default true).
- ``[scopes]``: ``read``, ``create``, ``modify`` (the scope names for those storage
  operations) and ``path_required``; optional ``stage``, ``poll`` and
  ``stage_implies_read``.
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
# Audience of tokens requested without one, for profiles with no any-audience.
NO_AUDIENCE = "urn:testbed:no-audience-requested"

_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "": {"name": str, "title": str, "specification": str},
    "header": {
        "algorithms": list,
        "default_algorithm": str,
        "required": list,
        "fields": dict,
    },
    "claims": {"required": list, "fixed": dict},
    "lifetime": {"default": int, "maximum": int, "expiry_leeway": int},
    "audience": {},
    "scopes": {"read": str, "create": str, "modify": str, "path_required": bool},
}
# Fields that a profile may leave out.
_OPTIONAL: dict[str, dict[str, type]] = {
    "": {"status": str, "extends": str},
    "header": {"typ": list},
    "claims": {"version_claim": str, "accepted_versions": str, "known": list},
    "audience": {"any": str, "required": bool},
    "scopes": {"stage": str, "poll": str, "stage_implies_read": bool},
}
STATUSES = ("published", "draft")


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
    accepted_versions: re.Pattern[str] | None
    # When set, every claim is critical: a claim outside this list is invalid.
    known_claims: tuple[str, ...]
    typ_values: tuple[str, ...]
    status: str
    default_lifetime: int
    maximum_lifetime: int
    expiry_leeway: int
    any_audience: str
    audience_required: bool
    scope_names: dict[str, str]
    path_required: bool
    stage_implies_read: bool
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
        if "client_id" in self.required_claims:
            claims["client_id"] = "testbed-client"
        claims.update(self.fixed_claims)
        return claims

    def version_supported(self, value: Any) -> bool:
        """Tell whether a version claim value is one that this profile accepts."""
        if not self.version_claim:
            return True
        if not isinstance(value, str):
            return False
        if self.accepted_versions is not None:
            return self.accepted_versions.fullmatch(value) is not None
        return value == self.fixed_claims.get(self.version_claim)

    def issuer_settings(self) -> dict[str, Any]:
        """Return the profile section of the reference issuer's configuration."""
        return {
            "header": dict(self.header_fields),
            "claims": dict(self.fixed_claims),
            "lifetime": self.default_lifetime,
            "max_lifetime": self.maximum_lifetime,
            "default_audience": self.any_audience or NO_AUDIENCE,
            "client_id_claim": not self.known_claims
            or "client_id" in self.known_claims,
            "alg": self.default_algorithm,
        }


def _fail(path: Path, field: str, problem: str, fix: str) -> ConfigurationError:
    message = f"{path}: field {field!r} {problem}"
    return ConfigurationError(f"{message}; {fix}" if fix else message)


def _check_tables(path: Path, data: dict[str, Any]) -> None:
    for key in data:
        if key not in _SCHEMA and key not in _SCHEMA[""] and key not in _OPTIONAL[""]:
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


def _read(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigurationError(
            f"{path}: cannot read the profile file: {exc}"
        ) from exc
    return data


def _merged(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Return the file's data with the tables of the profile it extends."""
    data = _read(path)
    parent_name = data.get("extends")
    if parent_name is None:
        return data
    if not isinstance(parent_name, str):
        raise _fail(path, "extends", "must be a profile name", f"got {parent_name!r}")
    parent_path = path.with_name(f"{parent_name}.toml")
    if not parent_path.is_file():
        raise _fail(
            path,
            "extends",
            f"names profile {parent_name!r}, which has no file {parent_path.name}",
            "name an existing profile",
        )
    if parent_path in (*seen, path):
        raise _fail(path, "extends", "forms a cycle", "remove one of the references")
    merged = _merged(parent_path, (*seen, path))
    merged.pop("status", None)
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def load_profile(path: Path) -> Profile:
    """Load and validate one profile file, with the profile it extends."""
    data = _merged(path)
    _check_tables(path, data)
    if data["name"] != path.stem:
        raise _fail(
            path,
            "name",
            f"is {data['name']!r} but the file is {path.name}",
            "make them equal",
        )
    header, claims, lifetime = data["header"], data["claims"], data["lifetime"]
    audience, scopes = data["audience"], data["scopes"]
    if not _NAME.match(data["name"]):
        raise _fail(
            path,
            "name",
            "must be lower-case letters, digits, dots and dashes",
            f"got {data['name']!r}",
        )
    status = data.get("status", "published")
    if status not in STATUSES:
        raise _fail(path, "status", f"is {status!r}", f"use one of {STATUSES}")
    for label, values in (
        ("header.algorithms", header["algorithms"]),
        ("header.required", header["required"]),
        ("claims.required", claims["required"]),
        ("header.typ", header.get("typ", ["-"])),
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
    version_claim = claims.get("version_claim", "")
    if version_claim and version_claim not in claims["fixed"]:
        raise _fail(
            path, "claims.version_claim", "has no value in claims.fixed", "add it"
        )
    accepted = None
    if "accepted_versions" in claims:
        try:
            accepted = re.compile(claims["accepted_versions"])
        except re.error as exc:
            raise _fail(
                path,
                "claims.accepted_versions",
                f"is not a regular expression ({exc})",
                "",
            ) from exc
        if version_claim and not accepted.fullmatch(
            str(claims["fixed"][version_claim])
        ):
            raise _fail(
                path,
                "claims.accepted_versions",
                "does not match the profile's own version",
                "widen the expression",
            )
    typ_values = tuple(header.get("typ", ()))
    if typ_values and header["fields"].get("typ") not in typ_values:
        raise _fail(
            path,
            "header.fields.typ",
            f"must be one of header.typ {list(typ_values)}",
            "set the typ that the issuer writes",
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
        version_claim=version_claim,
        accepted_versions=accepted,
        known_claims=tuple(claims.get("known", ())),
        typ_values=typ_values,
        status=status,
        default_lifetime=lifetime["default"],
        maximum_lifetime=lifetime["maximum"],
        expiry_leeway=lifetime["expiry_leeway"],
        any_audience=audience.get("any", ""),
        audience_required=audience.get("required", True),
        scope_names={
            op: scopes[op]
            for op in ("read", "create", "modify", "stage", "poll")
            if op in scopes
        },
        path_required=scopes["path_required"],
        stage_implies_read=scopes.get("stage_implies_read", False),
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
