"""Token variants: data-driven mutations of a profile's baseline token.

The format is described at the top of ``testbed/data/variants.toml``. Loading checks
every field; an error names the file, the variant and the field.
"""

from __future__ import annotations

import logging
import re
import time
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from testbed.errors import ConfigurationError, UsageError
from testbed.issuer_client import IssuerClient
from testbed.profiles import Profile, load_profiles

__all__ = ["VARIANTS_FILE", "Variant", "load_variants", "mint_variant"]

logger = logging.getLogger(__name__)

VARIANTS_FILE = Path(__file__).parent / "data" / "variants.toml"
REQUIREMENTS = ("MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY")
VERDICTS = ("accept", "reject", "either")
SIGNATURES = ("valid", "corrupt", "none")
KEYS = ("rs256", "es256", "unpublished")
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "summary": str,
    "expected": str,
    "requirement": str,
    "sections": dict,
    "omit_token": bool,
    "set_claims": dict,
    "remove_claims": list,
    "set_header": dict,
    "signature": str,
    "key": str,
}
_REQUIRED = ("id", "summary", "expected", "requirement", "sections")
_TIME = re.compile(r"^now([+-]\d+)?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
ANY_AUDIENCE = "{any_audience}"
# Version claims that a variant may set for several profiles at once; each token
# gets only the one its profile already carries.
OTHER_VERSION_CLAIMS = frozenset({"wlcg.ver", "ver"})


@dataclass(frozen=True)
class Variant:
    """One mutation of a baseline token and the verdict the specifications expect."""

    id: str
    summary: str
    expected: str
    requirement: str
    sections: dict[str, str]
    omit_token: bool = False
    set_claims: dict[str, Any] = field(default_factory=dict)
    remove_claims: tuple[str, ...] = ()
    set_header: dict[str, Any] = field(default_factory=dict)
    signature: str = "valid"
    key: str = "rs256"

    def section(self, profile: str) -> str:
        return self.sections[profile]


def _check(
    path: Path, index: int, entry: dict[str, Any], profiles: set[str]
) -> Variant:
    label = f"{path}: variant {entry.get('id', f'#{index + 1}')!r}"
    for name, value in entry.items():
        if name not in _FIELDS:
            raise ConfigurationError(
                f"{label}: unknown field {name!r}; valid fields: {', '.join(_FIELDS)}"
            )
        if not isinstance(value, _FIELDS[name]):
            raise ConfigurationError(
                f"{label}: field {name!r} has the wrong type ({type(value).__name__})"
            )
    for name in _REQUIRED:
        if name not in entry:
            raise ConfigurationError(f"{label}: field {name!r} is missing; add it")
    if entry["expected"] not in VERDICTS:
        raise ConfigurationError(
            f"{label}: expected must be one of {', '.join(VERDICTS)}"
        )
    if entry["requirement"] not in REQUIREMENTS:
        raise ConfigurationError(
            f"{label}: requirement must be one of {', '.join(REQUIREMENTS)}"
        )
    if entry.get("signature", "valid") not in SIGNATURES:
        raise ConfigurationError(
            f"{label}: signature must be one of {', '.join(SIGNATURES)}"
        )
    if entry.get("key", "rs256") not in KEYS:
        raise ConfigurationError(f"{label}: key must be one of {', '.join(KEYS)}")
    if not _NAME.match(entry["id"]):
        raise ConfigurationError(
            f"{label}: id must be lower-case letters, digits and dashes, "
            f"got {entry['id']!r}"
        )
    for profile, section in entry["sections"].items():
        if not isinstance(section, str) or not section.strip():
            raise ConfigurationError(
                f"{label}: sections.{profile} must be a non-empty string naming "
                "the specification section"
            )
        if profile not in profiles:
            raise ConfigurationError(
                f"{label}: sections names unknown profile {profile!r}; "
                f"valid profiles: {', '.join(sorted(profiles))}"
            )
    for claim, value in entry.get("set_claims", {}).items():
        if (
            isinstance(value, str)
            and value.startswith("now")
            and not _TIME.match(value)
        ):
            raise ConfigurationError(
                f"{label}: set_claims.{claim} = {value!r} is not a time; "
                "write now+N or now-N"
            )
    return Variant(
        id=entry["id"],
        summary=entry["summary"],
        expected=entry["expected"],
        requirement=entry["requirement"],
        sections=dict(entry["sections"]),
        omit_token=entry.get("omit_token", False),
        set_claims=dict(entry.get("set_claims", {})),
        remove_claims=tuple(entry.get("remove_claims", ())),
        set_header=dict(entry.get("set_header", {})),
        signature=entry.get("signature", "valid"),
        key=entry.get("key", "rs256"),
    )


@cache
def load_variants(path: Path = VARIANTS_FILE) -> dict[str, Variant]:
    """Load and validate the variants file; return the variants keyed by id."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigurationError(
            f"{path}: cannot read the variants file: {exc}"
        ) from exc
    extra = set(data) - {"variant"}
    if extra:
        raise ConfigurationError(
            f"{path}: unknown top-level keys {sorted(extra)}; use [[variant]] tables"
        )
    profiles = set(load_profiles())
    variants: dict[str, Variant] = {}
    for index, entry in enumerate(data.get("variant", [])):
        variant = _check(path, index, entry, profiles)
        if variant.id in variants:
            raise ConfigurationError(f"{path}: variant id {variant.id!r} appears twice")
        variants[variant.id] = variant
    return variants


def get_variant(name: str) -> Variant:
    """Return the variant ``name`` or raise UsageError listing the valid ids."""
    variants = load_variants()
    if name not in variants:
        raise UsageError(
            f"unknown variant {name!r}; valid variants: {', '.join(variants)}"
        )
    return variants[name]


def resolve_time(value: Any, now: int) -> Any:
    """Turn ``now``, ``now+N`` and ``now-N`` into seconds since the epoch."""
    if isinstance(value, str):
        match = _TIME.match(value)
        if match:
            return now + int(match.group(1) or 0)
    return value


def mint_variant(
    variant: Variant,
    profile: Profile,
    issuer: IssuerClient,
    kids: dict[str, str],
    audience: str,
    scope: str,
) -> tuple[dict[str, Any], dict[str, Any], str] | None:
    """Mint the variant's token; return (header, claims, token) or None for none."""
    if variant.omit_token:
        return None
    now = int(time.time())
    claims = profile.baseline_claims(issuer.issuer_url, audience, scope, now=now)
    for name, value in variant.set_claims.items():
        if value == ANY_AUDIENCE:
            value = profile.any_audience
        if name in claims or name not in OTHER_VERSION_CLAIMS:
            claims[name] = resolve_time(value, now)
    for name in variant.remove_claims:
        claims.pop(name, None)
    algorithm = "ES256" if variant.key == "es256" else "RS256"
    header: dict[str, Any] = {"alg": algorithm, "kid": kids[variant.key]}
    header.update(profile.header_fields)
    header.update(variant.set_header)
    token = issuer.mint(
        header, claims, key=kids[variant.key], signature=variant.signature
    )
    return header, claims, token
