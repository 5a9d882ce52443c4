"""Token variants: data-driven mutations of a profile's baseline token.

The format is described at the top of ``testbed/data/variants.toml``. Loading checks
every field; an error names the file, the variant and the field.
"""

from __future__ import annotations

import base64
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

__all__ = [
    "VARIANTS_FILE",
    "MintedToken",
    "Variant",
    "get_variant",
    "load_variants",
    "mint_variant",
]

logger = logging.getLogger(__name__)

VARIANTS_FILE = Path(__file__).parent / "data" / "variants.toml"
REQUIREMENTS = ("MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY")
VERDICTS = ("accept", "reject", "either")
SIGNATURES = ("valid", "corrupt", "none")
KEYS = ("rs256", "es256", "unpublished")
TRANSFORMS = (
    "drop-signature-segment",
    "extra-segment",
    "padded-segments",
    "header-not-json",
)
CATEGORIES = (
    "header",
    "signature",
    "time",
    "issuer",
    "audience",
    "version",
    "scope",
    "groups",
    "size",
    "claims",
    "request",
)
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "category": str,
    "summary": str,
    "profiles": list,
    "expected": (str, dict),
    "requirement": (str, dict),
    "section": str,
    "sections": dict,
    "omit_token": bool,
    "set_claims": dict,
    "remove_claims": list,
    "set_header": dict,
    "remove_header": list,
    "signature": str,
    "key": str,
    "transform": str,
}
_REQUIRED = ("id", "category", "summary", "expected", "requirement")
_TIME = re.compile(r"^now([+-]\d+(?:\.\d+)?)?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)(?::(\d+))?\}")
PLACEHOLDERS = (
    "dir",
    "parent",
    "issuer",
    "audience",
    "issuer_upper",
    "audience_upper",
    "read_upper",
    "any_audience",
    "read",
    "create",
    "modify",
    "stage",
    "poll",
    "padding",
)
# Version claims that a variant may set for several profiles at once; each token
# gets only the one its profile already carries.
OTHER_VERSION_CLAIMS = frozenset({"wlcg.ver", "ver"})


@dataclass(frozen=True)
class Variant:
    """One mutation of a baseline token and the verdicts the specifications expect.

    ``expected``, ``requirements`` and ``sections`` hold one entry for each profile
    the variant applies to.
    """

    id: str
    category: str
    summary: str
    expected: dict[str, str]
    requirements: dict[str, str]
    sections: dict[str, str]
    omit_token: bool = False
    set_claims: dict[str, Any] = field(default_factory=dict)
    remove_claims: tuple[str, ...] = ()
    set_header: dict[str, Any] = field(default_factory=dict)
    remove_header: tuple[str, ...] = ()
    signature: str = "valid"
    key: str = "rs256"
    transform: str | None = None

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(self.sections)

    def section(self, profile: str) -> str:
        return self.sections[profile]

    def expected_for(self, profile: str) -> str:
        return self.expected[profile]

    def requirement_for(self, profile: str) -> str:
        return self.requirements[profile]


def _per_profile(
    label: str,
    name: str,
    value: Any,
    profiles: tuple[str, ...],
    allowed: tuple[str, ...],
) -> dict[str, str]:
    """Expand a value given once or per profile (with an optional ``default``)."""
    if isinstance(value, str):
        table = {profile: value for profile in profiles}
    else:
        unknown = set(value) - set(profiles) - {"default"}
        if unknown:
            raise ConfigurationError(
                f"{label}: {name} names {sorted(unknown)}, which are not among the "
                f"variant's profiles {list(profiles)}"
            )
        table = {}
        for profile in profiles:
            if profile in value:
                table[profile] = value[profile]
            elif "default" in value:
                table[profile] = value["default"]
            else:
                raise ConfigurationError(
                    f"{label}: {name} has no value for profile {profile!r}; "
                    "add it or a 'default'"
                )
    for profile, item in table.items():
        if item not in allowed:
            raise ConfigurationError(
                f"{label}: {name} for {profile} is {item!r}; use one of "
                f"{', '.join(allowed)}"
            )
    return table


def _check_placeholders(label: str, value: Any) -> None:
    if isinstance(value, list):
        for item in value:
            _check_placeholders(label, item)
    elif isinstance(value, str):
        for match in _PLACEHOLDER.finditer(value):
            if match.group(1) not in PLACEHOLDERS:
                raise ConfigurationError(
                    f"{label}: unknown placeholder {{{match.group(1)}}}; valid "
                    f"placeholders: {', '.join(PLACEHOLDERS)}"
                )


def _check(path: Path, index: int, entry: dict[str, Any], known: set[str]) -> Variant:
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
    if not _NAME.match(entry["id"]):
        raise ConfigurationError(
            f"{label}: id must be lower-case letters, digits and dashes, "
            f"got {entry['id']!r}"
        )
    if entry["category"] not in CATEGORIES:
        raise ConfigurationError(
            f"{label}: category must be one of {', '.join(CATEGORIES)}"
        )
    for name, allowed in (
        ("signature", SIGNATURES),
        ("key", KEYS),
        ("transform", TRANSFORMS),
    ):
        if name in entry and entry[name] not in allowed:
            raise ConfigurationError(
                f"{label}: {name} must be one of {', '.join(allowed)}"
            )

    profiles = tuple(entry.get("profiles", sorted(known)))
    if not profiles:
        raise ConfigurationError(f"{label}: profiles is empty; name at least one")
    for profile in profiles:
        if profile not in known:
            raise ConfigurationError(
                f"{label}: profiles names unknown profile {profile!r}; "
                f"valid profiles: {', '.join(sorted(known))}"
            )
    overrides = entry.get("sections", {})
    for profile, text in overrides.items():
        if profile not in profiles:
            raise ConfigurationError(
                f"{label}: sections names profile {profile!r}, which is not among "
                f"the variant's profiles {list(profiles)}"
            )
        if not isinstance(text, str) or not text.strip():
            raise ConfigurationError(
                f"{label}: sections.{profile} must be a non-empty string naming "
                "the specification section"
            )
    sections = {}
    for profile in profiles:
        text = overrides.get(profile, entry.get("section", ""))
        if not text.strip():
            raise ConfigurationError(
                f"{label}: no section for profile {profile!r}; add 'section' or "
                f"'sections.\"{profile}\"'"
            )
        sections[profile] = text

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
        _check_placeholders(f"{label}: set_claims.{claim}", value)
    return Variant(
        id=entry["id"],
        category=entry["category"],
        summary=entry["summary"],
        expected=_per_profile(label, "expected", entry["expected"], profiles, VERDICTS),
        requirements=_per_profile(
            label, "requirement", entry["requirement"], profiles, REQUIREMENTS
        ),
        sections=sections,
        omit_token=entry.get("omit_token", False),
        set_claims=dict(entry.get("set_claims", {})),
        remove_claims=tuple(entry.get("remove_claims", ())),
        set_header=dict(entry.get("set_header", {})),
        remove_header=tuple(entry.get("remove_header", ())),
        signature=entry.get("signature", "valid"),
        key=entry.get("key", "rs256"),
        transform=entry.get("transform"),
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
    known = set(load_profiles())
    variants: dict[str, Variant] = {}
    for index, entry in enumerate(data.get("variant", [])):
        variant = _check(path, index, entry, known)
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
            offset = match.group(1) or "0"
            return now + (float(offset) if "." in offset else int(offset))
    return value


def _fill(value: Any, values: dict[str, str], variant: Variant, profile: str) -> Any:
    """Replace placeholders such as ``{dir}`` and ``{read}`` in a claim value."""
    if isinstance(value, list):
        return [_fill(item, values, variant, profile) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, size = match.group(1), match.group(2)
        if name == "padding":
            return "x" * int(size or 0)
        if name not in values:
            raise ConfigurationError(
                f"variant {variant.id}: profile {profile} has no value for "
                f"{{{name}}}; remove {profile} from the variant's profiles"
            )
        return values[name]

    return _PLACEHOLDER.sub(replace, value)


@dataclass(frozen=True)
class MintedToken:
    """A variant's token with the header and claims it was built from."""

    header: dict[str, Any]
    claims: dict[str, Any]
    token: str


def mint_variant(
    variant: Variant,
    profile: Profile,
    issuer: IssuerClient,
    kids: dict[str, str],
    audience: str,
    scope_dir: str,
) -> MintedToken | None:
    """Mint the variant's token for a read below ``scope_dir``; None for no token."""
    if variant.omit_token:
        return None
    now = int(time.time())
    claims = profile.baseline_claims(
        issuer.issuer_url, audience, profile.scope("read", scope_dir), now=now
    )
    values = {
        "dir": scope_dir,
        "parent": scope_dir.rsplit("/", 1)[0] or "/",
        "issuer": issuer.issuer_url,
        "audience": audience,
        "issuer_upper": issuer.issuer_url.upper(),
        "audience_upper": audience.upper(),
        "read_upper": profile.scope_names["read"].upper(),
        **{op: name for op, name in profile.scope_names.items()},
    }
    if profile.any_audience:
        values["any_audience"] = profile.any_audience
    for name, value in variant.set_claims.items():
        if name in OTHER_VERSION_CLAIMS and name != profile.version_claim:
            continue
        claims[name] = resolve_time(_fill(value, values, variant, profile.name), now)
    for name in variant.remove_claims:
        claims.pop(name, None)

    algorithm = "ES256" if variant.key == "es256" else "RS256"
    header: dict[str, Any] = {"alg": algorithm, "kid": kids[variant.key]}
    header.update(profile.header_fields)
    for name, value in variant.set_header.items():
        if isinstance(value, str) and value.startswith("@") and value[1:] in kids:
            value = kids[value[1:]]
        header[name] = value
    for name in variant.remove_header:
        header.pop(name, None)
    token = issuer.mint(
        header, claims, key=kids[variant.key], signature=variant.signature
    )
    if variant.transform:
        token = transform_token(token, variant.transform)
    return MintedToken(header, claims, token)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def transform_token(token: str, transform: str) -> str:
    """Apply a transport-level damage to a compact JWS."""
    head, body, signature = token.split(".")
    if transform == "drop-signature-segment":
        return f"{head}.{body}"
    if transform == "extra-segment":
        return f"{token}.{head}"
    if transform == "padded-segments":
        return ".".join(
            part + "=" * (-len(part) % 4) for part in (head, body, signature)
        )
    if transform == "header-not-json":
        return f"{_b64(b'this is not JSON')}.{body}.{signature}"
    raise ConfigurationError(f"unknown transform {transform!r}")
