"""Tests of testbed.variants and testbed.cases.

The variants file, its checks and minting, then the cases that scenarios run, which
combine the storage cases with the variants.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from testbed.cases import (
    SCENARIOS,
    RejectionCase,
    StorageCase,
    cases_for,
    profiles_with_cases,
    rejection_cases,
    resolve_scenarios,
)
from testbed.errors import ConfigurationError, TokenError, UsageError
from testbed.profiles import get_profile, load_profiles
from testbed.tokens import decode_unverified
from testbed.variants import (
    CATEGORIES,
    REQUIREMENTS,
    VERDICTS,
    MintedToken,
    Variant,
    get_variant,
    load_variants,
    mint_variant,
    resolve_time,
    transform_token,
)

AUDIENCE = "https://storage.test:1094"
SCOPE_DIR = "/cells/abc"
DEFAULT_PROFILES = ["wlcg-1.0", "scitokens-2.0"]
KIDS = {"rs256": "kid-rs", "es256": "kid-es", "unpublished": "kid-unpublished"}
ALL_PROFILES = sorted(load_profiles())

VALID_ENTRY = """\
[[variant]]
id = "sample"
category = "claims"
summary = "a sample variant"
expected = "reject"
requirement = "MUST"
section = "RFC 7519 section 4"
"""


class RecordingIssuer:
    """An IssuerClient stand-in that records what mint() receives.

    mint() returns a placeholder with the three segments of a compact JWS, so that
    transforms apply to it.
    """

    issuer_url = "https://issuer.test:8443"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def mint(
        self,
        header: dict[str, Any],
        claims: dict[str, Any],
        key: str | None = None,
        signature: str = "valid",
    ) -> str:
        self.calls.append(
            {
                "header": dict(header),
                "claims": dict(claims),
                "key": key,
                "signature": signature,
            }
        )
        number = len(self.calls)
        return f"header{number}.claims{number}.signature{number}"


class SigningIssuer:
    """An IssuerClient stand-in that signs with PyJWT and keeps each signed token.

    ``keys`` maps a kid to its private key. Only valid signatures are supported.
    """

    issuer_url = "https://issuer.test:8443"

    def __init__(self, keys: dict[str, Any]) -> None:
        self.keys = keys
        self.tokens: list[str] = []

    def mint(
        self,
        header: dict[str, Any],
        claims: dict[str, Any],
        key: str | None = None,
        signature: str = "valid",
    ) -> str:
        assert signature == "valid", "SigningIssuer makes valid signatures only"
        assert key is not None
        # PyJWT (2.15 here) adds typ JWT unless the headers set typ, and a typ of
        # None drops it. So the token carries exactly ``header``.
        token = jwt.encode(
            claims,
            self.keys[key],
            algorithm=header["alg"],
            headers={"typ": None, **header},
        )
        self.tokens.append(token)
        return token


@pytest.fixture(scope="module")
def private_keys() -> dict[str, Any]:
    return {
        KIDS["rs256"]: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        KIDS["es256"]: ec.generate_private_key(ec.SECP256R1()),
    }


@pytest.fixture
def signing_issuer(private_keys: dict[str, Any]) -> SigningIssuer:
    return SigningIssuer(private_keys)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "variants.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _load_sample(tmp_path: Path, text: str) -> Variant:
    return load_variants(_write(tmp_path, text))["sample"]


def _load_error(path: Path) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_variants(path)
    return str(info.value)


def _mint(
    variant_id: str, profile: str = "wlcg-1.0", scope_dir: str = SCOPE_DIR
) -> tuple[MintedToken | None, RecordingIssuer]:
    issuer = RecordingIssuer()
    minted = mint_variant(
        get_variant(variant_id),
        get_profile(profile),
        issuer,
        KIDS,
        AUDIENCE,
        scope_dir,
    )
    return minted, issuer


def _mint_sample(
    variant: Variant, profile: str = "wlcg-1.0"
) -> tuple[MintedToken | None, RecordingIssuer]:
    issuer = RecordingIssuer()
    minted = mint_variant(
        variant,
        get_profile(profile),
        issuer,
        KIDS,
        AUDIENCE,
        SCOPE_DIR,
    )
    return minted, issuer


def _mint_signed(
    variant_id: str, issuer: SigningIssuer, profile: str = "wlcg-1.0"
) -> MintedToken:
    minted = mint_variant(
        get_variant(variant_id),
        get_profile(profile),
        issuer,
        KIDS,
        AUDIENCE,
        SCOPE_DIR,
    )
    assert minted is not None
    return minted


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# --- the shipped variants file -------------------------------------------------


def test_shipped_variants_at_least_60() -> None:
    assert len(load_variants()) >= 60


def test_shipped_variant_ids_match_keys() -> None:
    variants = load_variants()
    assert all(key == variant.id for key, variant in variants.items())


def test_shipped_variants_cover_every_category() -> None:
    categories = {variant.category for variant in load_variants().values()}
    assert categories == set(CATEGORIES)


def test_shipped_variants_name_known_profiles() -> None:
    for variant in load_variants().values():
        assert variant.profiles, variant.id
        assert set(variant.profiles) <= set(ALL_PROFILES), variant.id


def test_most_shipped_variants_cover_all_profiles() -> None:
    everywhere = [
        v for v in load_variants().values() if set(v.profiles) == set(ALL_PROFILES)
    ]
    assert len(everywhere) >= 60


def test_shipped_variants_have_entry_per_profile() -> None:
    for variant in load_variants().values():
        profiles = set(variant.profiles)
        assert set(variant.expected) == profiles, variant.id
        assert set(variant.requirements) == profiles, variant.id
        assert set(variant.sections) == profiles, variant.id


def test_shipped_variants_have_sections_text() -> None:
    for variant in load_variants().values():
        for profile in variant.profiles:
            assert variant.section(profile).strip(), (variant.id, profile)


def test_shipped_variants_have_known_verdicts() -> None:
    for variant in load_variants().values():
        for profile in variant.profiles:
            label = (variant.id, profile)
            assert variant.expected_for(profile) in VERDICTS, label
            assert variant.requirement_for(profile) in REQUIREMENTS, label


def test_shipped_variants_include_named() -> None:
    names = {
        "valid",
        "no-token",
        "expired",
        "wrong-audience",
        "alg-none",
        "kid-missing",
        "typ-jwt",
        "newer-minor-version",
        "stage-scope-reads",
        "two-segments",
        "token-6-kb",
    }
    assert names <= set(load_variants())


def test_restricted_variant_profiles() -> None:
    assert get_variant("stage-scope-reads").profiles == (
        "wlcg-1.0",
        "wlcg-1.3",
        "wlcg-2.0-draft",
    )
    assert get_variant("poll-scope-reads").profiles == ("wlcg-1.3", "wlcg-2.0-draft")
    assert get_variant("newer-minor-version").profiles == ("wlcg-1.0", "wlcg-1.3")
    assert "rfc9068" not in get_variant("any-audience").profiles


def test_unrestricted_variant_covers_all_profiles() -> None:
    assert get_variant("expired").profiles == tuple(ALL_PROFILES)


def test_get_variant_unknown_lists_valid() -> None:
    with pytest.raises(UsageError, match="unknown variant 'nosuch'") as info:
        get_variant("nosuch")
    assert "expired" in str(info.value)


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_every_shipped_variant_mints(profile: str) -> None:
    """Mint every variant for each of its profiles, so every placeholder resolves."""
    for variant in load_variants().values():
        if profile not in variant.profiles:
            continue
        minted, issuer = _mint(variant.id, profile)
        if variant.omit_token:
            assert minted is None, variant.id
            continue
        assert minted is not None, variant.id
        if variant.transform is None:
            assert minted.token == "header1.claims1.signature1", variant.id
        assert issuer.calls[0]["claims"] == minted.claims, variant.id


# --- expected verdicts, checked against the specification text ----------------

# Section headings of the WLCG 1.0 document, which has no section numbers.
WLCG10_VALIDATION = "WLCG 1.0, Claim and Token validation"
WLCG10_VERIFICATION = "WLCG 1.0, Token Verification"
WLCG10_SCOPE = "WLCG 1.0, Capability based Authorization: scope"
WLCG10_LIFETIME = "WLCG 1.0, Token Lifetime Guidance"

# Rows of variant, profile, expected verdict, requirement level and text that the
# section must contain. Each row was checked against the cited text of WLCG 1.0 or
# 1.3, RFC 9068, RFC 7515, RFC 7519, or the SciTokens Claims and Verification pages.
# NOTE: no wlcg-1.3 rows for expired-within-leeway or lifetime-over-maximum. The
# 1.3 text of 4.3.1 no longer states the 60 s leeway, nor that resource servers
# must reject tokens valid for longer than 6 hours, so the file's 1.3 verdicts for
# those variants are in doubt.
SPECIFICATION_VERDICTS = [
    ("newer-minor-version", "wlcg-1.0", "reject", "MUST", WLCG10_VALIDATION),
    ("newer-minor-version", "wlcg-1.3", "accept", "MUST", "WLCG 1.3, 4.3.3"),
    ("version-1-3", "wlcg-1.0", "reject", "MUST", WLCG10_VALIDATION),
    ("version-1-3", "wlcg-1.3", "accept", "MUST", "WLCG 1.3, 4.3.3"),
    ("unsupported-version", "wlcg-1.0", "reject", "MUST", WLCG10_VALIDATION),
    ("unsupported-version", "wlcg-1.3", "reject", "MUST", "WLCG 1.3, 4.3.3"),
    ("typ-jwt", "rfc9068", "reject", "MUST", "RFC 9068 section 4"),
    ("typ-jwt", "wlcg-1.0", "accept", "SHOULD", "RFC 7519 section 5.1"),
    ("typ-missing", "rfc9068", "reject", "MUST", "RFC 9068 section 4"),
    ("typ-missing", "scitokens-2.0", "accept", "SHOULD", "RFC 7519 section 5.1"),
    ("typ-application-at-jwt", "rfc9068", "accept", "MUST", "RFC 9068 section 2.1"),
    ("client-id-missing", "rfc9068", "reject", "MUST", "RFC 9068 section 2.2"),
    ("stage-scope-reads", "wlcg-1.0", "accept", "MUST", WLCG10_SCOPE),
    ("stage-scope-reads", "wlcg-1.3", "reject", "MUST", "WLCG 1.3, 2.2.1"),
    ("poll-scope-reads", "wlcg-1.3", "reject", "MUST", "WLCG 1.3, 2.2.1"),
    ("kid-missing", "wlcg-1.0", "reject", "MUST", WLCG10_VERIFICATION),
    ("kid-missing", "wlcg-1.3", "reject", "MUST", "WLCG 1.3, 4.2"),
    ("kid-missing", "wlcg-2.0-draft", "reject", "MUST", "WLCG 1.3, 4.2"),
    ("kid-missing", "rfc9068", "either", "MAY", "RFC 7515 section 4.1.4"),
    ("kid-missing", "scitokens-1.0", "either", "MAY", "RFC 7515 section 4.1.4"),
    ("kid-missing", "scitokens-2.0", "either", "MAY", "RFC 7515 section 4.1.4"),
    ("scope-without-path", "wlcg-1.0", "reject", "MUST", WLCG10_SCOPE),
    ("scope-without-path", "wlcg-1.3", "reject", "MUST", "WLCG 1.3, 2.2.1"),
    ("audience-missing", "scitokens-1.0", "either", "MAY", "SciTokens Claims"),
    ("nbf-missing", "scitokens-2.0", "reject", "MUST", "SciTokens Verification"),
    ("expired-within-leeway", "wlcg-1.0", "accept", "SHOULD", WLCG10_LIFETIME),
    ("lifetime-over-maximum", "wlcg-1.0", "reject", "MUST NOT", WLCG10_LIFETIME),
    ("alg-none", "wlcg-1.0", "reject", "MUST", WLCG10_VERIFICATION),
]


@pytest.mark.parametrize(
    ("variant_id", "profile", "expected", "requirement", "section"),
    SPECIFICATION_VERDICTS,
)
def test_verdict_matches_specification(
    variant_id: str, profile: str, expected: str, requirement: str, section: str
) -> None:
    variant = get_variant(variant_id)
    assert variant.expected_for(profile) == expected
    assert variant.requirement_for(profile) == requirement
    assert section in variant.section(profile)


# --- verdicts consistent with the profiles -------------------------------------


def test_version_verdicts_follow_profiles() -> None:
    """A version variant is accepted exactly where the profile supports the value."""
    checked = 0
    for variant in load_variants().values():
        if variant.category != "version":
            continue
        for name in variant.profiles:
            profile = get_profile(name)
            if profile.version_claim not in variant.set_claims:
                continue
            expected = variant.expected_for(name)
            if expected == "either":
                continue
            value = variant.set_claims[profile.version_claim]
            supported = profile.version_supported(value)
            assert (expected == "accept") == supported, (variant.id, name)
            checked += 1
    assert checked >= 10


def test_typ_verdicts_follow_profiles() -> None:
    """A typ variant is rejected exactly where the profile lists other typ values."""
    checked = 0
    for variant in load_variants().values():
        if "typ" not in variant.set_header and "typ" not in variant.remove_header:
            continue
        typ = variant.set_header.get("typ")
        for name in variant.profiles:
            profile = get_profile(name)
            accepted = not profile.typ_values or typ in profile.typ_values
            expected = "accept" if accepted else "reject"
            assert variant.expected_for(name) == expected, (variant.id, name)
            checked += 1
    assert checked >= 20


def test_missing_required_claim_rejected() -> None:
    """A variant that removes a claim the profile requires expects reject."""
    checked = 0
    for variant in load_variants().values():
        if variant.set_claims or not variant.remove_claims:
            continue
        for name in variant.profiles:
            required = set(get_profile(name).required_claims)
            if required & set(variant.remove_claims):
                assert variant.expected_for(name) == "reject", (variant.id, name)
                checked += 1
    assert checked >= 30


def test_leeway_verdict_follows_profiles() -> None:
    variant = get_variant("expired-within-leeway")
    expired_for = -resolve_time(variant.set_claims["exp"], 0)
    for name in variant.profiles:
        within = get_profile(name).expiry_leeway > expired_for
        expected = "accept" if within else "either"
        assert variant.expected_for(name) == expected, name


# --- loading and checking a variants file --------------------------------------


def test_sample_file_loads(tmp_path: Path) -> None:
    variant = _load_sample(tmp_path, VALID_ENTRY)
    assert variant.category == "claims"
    assert variant.profiles == tuple(ALL_PROFILES)
    assert variant.expected == dict.fromkeys(ALL_PROFILES, "reject")
    assert variant.requirements == dict.fromkeys(ALL_PROFILES, "MUST")
    assert variant.sections == dict.fromkeys(ALL_PROFILES, "RFC 7519 section 4")
    assert variant.signature == "valid"
    assert variant.key == "rs256"
    assert variant.omit_token is False
    assert variant.transform is None
    assert variant.remove_header == ()


def test_per_profile_expected_with_default(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace(
        'expected = "reject"',
        'expected = { default = "either", "wlcg-1.0" = "reject" }',
    ).replace(
        'requirement = "MUST"',
        'requirement = { default = "MAY", "wlcg-1.0" = "MUST" }',
    )
    variant = _load_sample(tmp_path, text)
    assert variant.expected_for("wlcg-1.0") == "reject"
    assert variant.requirement_for("wlcg-1.0") == "MUST"
    for profile in ALL_PROFILES:
        if profile == "wlcg-1.0":
            continue
        assert variant.expected_for(profile) == "either", profile
        assert variant.requirement_for(profile) == "MAY", profile


def test_per_profile_expected_without_default(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace(
        'expected = "reject"',
        'profiles = ["wlcg-1.0", "rfc9068"]\n'
        'expected = { "wlcg-1.0" = "reject", "rfc9068" = "accept" }',
    )
    variant = _load_sample(tmp_path, text)
    assert variant.expected == {"wlcg-1.0": "reject", "rfc9068": "accept"}


def test_load_variants_rejects_missing_expected_value(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace(
        'expected = "reject"', 'expected = { "wlcg-1.0" = "reject" }'
    )
    path = _write(tmp_path, text)
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "expected has no value for profile 'rfc9068'" in message
    assert "'default'" in message


def test_load_variants_rejects_missing_requirement_value(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace(
        'requirement = "MUST"', 'requirement = { "rfc9068" = "MUST" }'
    )
    message = _load_error(_write(tmp_path, text))
    assert "'sample'" in message
    assert "requirement has no value for profile 'scitokens-1.0'" in message


def test_load_variants_rejects_expected_for_other_profile(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace(
        'expected = "reject"',
        'profiles = ["wlcg-1.0"]\n'
        'expected = { default = "reject", "wlcg-1.3" = "accept" }',
    )
    message = _load_error(_write(tmp_path, text))
    assert "'sample'" in message
    assert "expected names ['wlcg-1.3']" in message


def test_load_variants_rejects_bad_expected(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace('expected = "reject"', 'expected = "refuse"')
    path = _write(tmp_path, text)
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "expected for rfc9068 is 'refuse'" in message
    assert "accept, reject, either" in message


def test_load_variants_rejects_bad_expected_in_table(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace(
        'expected = "reject"',
        'expected = { default = "reject", "wlcg-1.3" = "refuse" }',
    )
    message = _load_error(_write(tmp_path, text))
    assert "'sample'" in message
    assert "expected for wlcg-1.3 is 'refuse'" in message


def test_load_variants_rejects_bad_requirement(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace('requirement = "MUST"', 'requirement = "must"')
    path = _write(tmp_path, text)
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "requirement for rfc9068 is 'must'" in message
    assert "MUST NOT" in message


def test_sections_override_section(tmp_path: Path) -> None:
    text = VALID_ENTRY + 'sections."wlcg-1.3" = "WLCG 1.3, 4.3.3"\n'
    variant = _load_sample(tmp_path, text)
    assert variant.section("wlcg-1.3") == "WLCG 1.3, 4.3.3"
    assert variant.section("wlcg-1.0") == "RFC 7519 section 4"
    assert variant.section("rfc9068") == "RFC 7519 section 4"


def test_sections_without_section(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace(
        'section = "RFC 7519 section 4"\n',
        'profiles = ["wlcg-1.0", "wlcg-1.3"]\n'
        'sections."wlcg-1.0" = "WLCG 1.0, Token Verification"\n'
        'sections."wlcg-1.3" = "WLCG 1.3, 4.2"\n',
    )
    variant = _load_sample(tmp_path, text)
    assert variant.sections == {
        "wlcg-1.0": "WLCG 1.0, Token Verification",
        "wlcg-1.3": "WLCG 1.3, 4.2",
    }


def test_load_variants_rejects_missing_section(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace(
        'section = "RFC 7519 section 4"\n',
        'sections."wlcg-1.0" = "WLCG 1.0, Token Verification"\n',
    )
    path = _write(tmp_path, text)
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "no section for profile 'rfc9068'" in message


def test_load_variants_rejects_empty_section(tmp_path: Path) -> None:
    message = _load_error(_write(tmp_path, VALID_ENTRY + 'sections."wlcg-1.0" = ""\n'))
    assert "'sample'" in message
    assert "sections.wlcg-1.0 must be a non-empty string" in message


def test_load_variants_rejects_section_for_unknown_profile(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'sections."wlcg-9.9" = "x"\n')
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "sections names profile 'wlcg-9.9'" in message


def test_load_variants_rejects_section_outside_profiles(tmp_path: Path) -> None:
    text = VALID_ENTRY + 'profiles = ["wlcg-1.0"]\nsections."rfc9068" = "RFC 9068"\n'
    message = _load_error(_write(tmp_path, text))
    assert "'sample'" in message
    assert "sections names profile 'rfc9068'" in message
    assert "['wlcg-1.0']" in message


def test_profiles_restrict_variant(tmp_path: Path) -> None:
    text = VALID_ENTRY + 'profiles = ["wlcg-1.3", "scitokens-2.0"]\n'
    variant = _load_sample(tmp_path, text)
    assert variant.profiles == ("wlcg-1.3", "scitokens-2.0")
    assert set(variant.expected) == {"wlcg-1.3", "scitokens-2.0"}
    assert set(variant.requirements) == {"wlcg-1.3", "scitokens-2.0"}


def test_load_variants_rejects_unknown_profile(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'profiles = ["wlcg-1.0", "wlcg-9.9"]\n')
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "profiles names unknown profile 'wlcg-9.9'" in message
    assert "wlcg-1.3" in message


def test_load_variants_rejects_unknown_placeholder(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'set_claims = { scope = "{nosuch}:/" }\n')
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "set_claims.scope" in message
    assert "unknown placeholder {nosuch}" in message
    assert "valid placeholders: dir, parent" in message


def test_load_variants_rejects_placeholder_in_list(tmp_path: Path) -> None:
    text = VALID_ENTRY + 'set_claims = { aud = ["{audience}", "{issuer_lower}"] }\n'
    message = _load_error(_write(tmp_path, text))
    assert "set_claims.aud" in message
    assert "unknown placeholder {issuer_lower}" in message


def test_load_variants_rejects_unknown_field(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'colour = "red"\n')
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "'colour'" in message


def test_load_variants_rejects_bad_time(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'set_claims = { exp = "now+x" }\n')
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "set_claims.exp" in message
    assert "'now+x'" in message


def test_load_variants_rejects_two_fractions(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'set_claims = { exp = "now+1.5.5" }\n')
    message = _load_error(path)
    assert "set_claims.exp" in message
    assert "'now+1.5.5'" in message


def test_fractional_time_loads(tmp_path: Path) -> None:
    text = VALID_ENTRY + 'set_claims = { exp = "now+600.5" }\n'
    assert _load_sample(tmp_path, text).set_claims == {"exp": "now+600.5"}


def test_load_variants_rejects_wrong_type(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'omit_token = "yes"\n')
    message = _load_error(path)
    assert "'sample'" in message
    assert "'omit_token'" in message
    assert "wrong type" in message


def test_load_variants_rejects_remove_header_string(tmp_path: Path) -> None:
    message = _load_error(_write(tmp_path, VALID_ENTRY + 'remove_header = "kid"\n'))
    assert "'remove_header'" in message
    assert "wrong type" in message


def test_load_variants_rejects_missing_field(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY.replace('summary = "a sample variant"\n', ""))
    message = _load_error(path)
    assert "'sample'" in message
    assert "'summary'" in message
    assert "is missing" in message


def test_load_variants_rejects_missing_category(tmp_path: Path) -> None:
    message = _load_error(
        _write(tmp_path, VALID_ENTRY.replace('category = "claims"\n', ""))
    )
    assert "'sample'" in message
    assert "'category'" in message
    assert "is missing" in message


def test_load_variants_rejects_bad_category(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace('category = "claims"', 'category = "misc"')
    message = _load_error(_write(tmp_path, text))
    assert "'sample'" in message
    assert "category must be one of" in message
    assert "request" in message


def test_load_variants_rejects_bad_signature(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'signature = "forged"\n')
    message = _load_error(path)
    assert "'sample'" in message
    assert "signature must be one of" in message


def test_load_variants_rejects_bad_key(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'key = "hs256"\n')
    message = _load_error(path)
    assert "'sample'" in message
    assert "key must be one of" in message


def test_load_variants_rejects_bad_transform(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'transform = "reverse"\n')
    message = _load_error(path)
    assert "'sample'" in message
    assert "transform must be one of" in message
    assert "header-not-json" in message


def test_load_variants_rejects_duplicate_id(tmp_path: Path) -> None:
    message = _load_error(_write(tmp_path, VALID_ENTRY + "\n" + VALID_ENTRY))
    assert "'sample' appears twice" in message


def test_load_variants_rejects_top_level_key(tmp_path: Path) -> None:
    message = _load_error(_write(tmp_path, "version = 1\n\n" + VALID_ENTRY))
    assert "unknown top-level keys" in message
    assert "version" in message


def test_load_variants_rejects_toml_syntax(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + "id = = 1\n")
    message = _load_error(path)
    assert str(path) in message
    assert "invalid TOML" in message


def test_load_variants_names_entry_without_id(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace('id = "sample"\n', "")
    message = _load_error(_write(tmp_path, text))
    assert "'#1'" in message
    assert "'id'" in message


def test_load_variants_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    message = _load_error(path)
    assert str(path) in message
    assert "cannot read" in message


# --- times ---------------------------------------------------------------------


def test_resolve_time_now() -> None:
    assert resolve_time("now", 1000) == 1000


def test_resolve_time_offsets() -> None:
    assert resolve_time("now+60", 1000) == 1060
    assert resolve_time("now-600", 1000) == 400


def test_resolve_time_integer_stays_integer() -> None:
    assert isinstance(resolve_time("now+60", 1000), int)


def test_resolve_time_fractional_offsets() -> None:
    assert resolve_time("now+600.5", 1000) == 1600.5
    assert resolve_time("now-0.25", 1000) == 999.75
    assert isinstance(resolve_time("now+600.5", 1000), float)


def test_resolve_time_leaves_other_values() -> None:
    assert resolve_time("https://issuer.test", 1000) == "https://issuer.test"
    assert resolve_time(42, 1000) == 42
    assert resolve_time("now+x", 1000) == "now+x"


# --- minting -------------------------------------------------------------------


def test_mint_valid_uses_baseline() -> None:
    minted, issuer = _mint("valid")
    assert isinstance(minted, MintedToken)
    assert minted.token == "header1.claims1.signature1"
    assert minted.header == {"alg": "RS256", "kid": "kid-rs"}
    assert minted.claims["aud"] == AUDIENCE
    assert minted.claims["scope"] == f"storage.read:{SCOPE_DIR}"
    assert minted.claims["iss"] == RecordingIssuer.issuer_url
    assert minted.claims["wlcg.ver"] == "1.0"
    assert issuer.calls[0]["key"] == "kid-rs"
    assert issuer.calls[0]["signature"] == "valid"


def test_mint_valid_scitokens_scope() -> None:
    minted, _ = _mint("valid", profile="scitokens-2.0")
    assert minted is not None
    assert minted.claims["scope"] == f"read:{SCOPE_DIR}"
    assert minted.claims["ver"] == "scitoken:2.0"
    assert "wlcg.ver" not in minted.claims


def test_mint_valid_rfc9068_header_typ() -> None:
    minted, _ = _mint("valid", profile="rfc9068")
    assert minted is not None
    assert minted.header == {"alg": "RS256", "kid": "kid-rs", "typ": "at+jwt"}
    assert minted.claims["client_id"]
    assert "wlcg.ver" not in minted.claims
    assert "ver" not in minted.claims


def test_mint_valid_draft_version() -> None:
    minted, _ = _mint("valid", profile="wlcg-2.0-draft")
    assert minted is not None
    assert minted.header["typ"] == "at+jwt"
    assert minted.claims["wlcg.ver"] == "2.0"


def test_mint_sends_returned_header_and_claims() -> None:
    minted, issuer = _mint("expired")
    assert minted is not None
    assert issuer.calls[0]["header"] == minted.header
    assert issuer.calls[0]["claims"] == minted.claims


def test_mint_expired_exp_in_past() -> None:
    before = int(time.time())
    minted, _ = _mint("expired")
    assert minted is not None
    assert minted.claims["exp"] < before
    assert minted.claims["iat"] < minted.claims["exp"]


def test_mint_fractional_exp() -> None:
    minted, _ = _mint("exp-fractional")
    assert minted is not None
    assert isinstance(minted.claims["exp"], float)
    assert minted.claims["exp"] - minted.claims["iat"] == 600.5


def test_mint_wrong_audience() -> None:
    minted, _ = _mint("wrong-audience")
    assert minted is not None
    assert minted.claims["aud"] != AUDIENCE
    assert minted.claims["aud"] == "https://other-storage.invalid:1094"


def test_mint_alg_none() -> None:
    minted, issuer = _mint("alg-none")
    assert minted is not None
    assert minted.header["alg"] == "none"
    assert issuer.calls[0]["header"]["alg"] == "none"
    assert issuer.calls[0]["signature"] == "none"


def test_mint_es256_key() -> None:
    minted, issuer = _mint("valid-es256", profile="scitokens-2.0")
    assert minted is not None
    assert minted.header == {"alg": "ES256", "kid": "kid-es"}
    assert issuer.calls[0]["key"] == "kid-es"
    assert minted.claims["ver"] == "scitoken:2.0"


def test_mint_unpublished_key() -> None:
    minted, issuer = _mint("unpublished-key")
    assert minted is not None
    assert minted.header["kid"] == "kid-unpublished"
    assert issuer.calls[0]["key"] == "kid-unpublished"


def test_mint_bad_signature() -> None:
    _, issuer = _mint("bad-signature")
    assert issuer.calls[0]["signature"] == "corrupt"


def test_mint_no_token_returns_none() -> None:
    minted, issuer = _mint("no-token")
    assert minted is None
    assert issuer.calls == []


def test_mint_kid_reference() -> None:
    minted, issuer = _mint("kid-of-other-key")
    assert minted is not None
    assert minted.header == {"alg": "RS256", "kid": "kid-es"}
    assert issuer.calls[0]["key"] == "kid-rs"


def test_mint_unknown_kid_reference_is_literal(tmp_path: Path) -> None:
    variant = _load_sample(tmp_path, VALID_ENTRY + 'set_header = { kid = "@other" }\n')
    minted, _ = _mint_sample(variant)
    assert minted is not None
    assert minted.header["kid"] == "@other"


def test_mint_remove_header_kid() -> None:
    minted, issuer = _mint("kid-missing")
    assert minted is not None
    assert minted.header == {"alg": "RS256"}
    assert issuer.calls[0]["key"] == "kid-rs"


def test_mint_remove_profile_typ() -> None:
    minted, _ = _mint("typ-missing", profile="rfc9068")
    assert minted is not None
    assert minted.header == {"alg": "RS256", "kid": "kid-rs"}


def test_mint_set_header_replaces_profile_typ() -> None:
    minted, _ = _mint("typ-jwt", profile="rfc9068")
    assert minted is not None
    assert minted.header["typ"] == "JWT"


def test_mint_remove_claims(tmp_path: Path) -> None:
    text = VALID_ENTRY + 'remove_claims = ["jti", "absent"]\n'
    minted, _ = _mint_sample(_load_sample(tmp_path, text))
    assert minted is not None
    assert "jti" not in minted.claims
    assert "sub" in minted.claims


@pytest.mark.parametrize(
    ("variant_id", "profile", "claim", "value"),
    [
        ("scope-parent-directory", "wlcg-1.0", "scope", "storage.read:/cells"),
        ("scope-without-path", "scitokens-2.0", "scope", "read"),
        ("scope-other-operation", "scitokens-2.0", "scope", f"write:{SCOPE_DIR}"),
        (
            "scope-sibling-prefix",
            "wlcg-1.0",
            "scope",
            f"storage.read:{SCOPE_DIR}/fi",
        ),
        ("stage-scope-reads", "wlcg-1.3", "scope", f"storage.stage:{SCOPE_DIR}"),
        ("poll-scope-reads", "wlcg-2.0-draft", "scope", f"storage.poll:{SCOPE_DIR}"),
        ("issuer-upper-case", "wlcg-1.0", "iss", "HTTPS://ISSUER.TEST:8443"),
        ("issuer-trailing-slash", "rfc9068", "iss", "https://issuer.test:8443/"),
        ("audience-upper-case", "wlcg-1.0", "aud", AUDIENCE.upper()),
        (
            "audience-array-containing",
            "scitokens-1.0",
            "aud",
            ["https://other-storage.invalid:1094", AUDIENCE],
        ),
        ("any-audience", "scitokens-1.0", "aud", "ANY"),
        ("any-audience", "wlcg-1.3", "aud", "https://wlcg.cern.ch/jwt/v1/any"),
    ],
)
def test_mint_fills_placeholders(
    variant_id: str, profile: str, claim: str, value: Any
) -> None:
    minted, _ = _mint(variant_id, profile)
    assert minted is not None
    assert minted.claims[claim] == value


def test_mint_parent_of_top_directory() -> None:
    minted, _ = _mint("scope-parent-directory", scope_dir="/abc")
    assert minted is not None
    assert minted.claims["scope"] == "storage.read:/"


def test_mint_padding_placeholder() -> None:
    minted, _ = _mint("token-6-kb")
    assert minted is not None
    assert minted.claims["x-testbed-padding"] == "x" * 6000


def test_mint_padding_inside_text(tmp_path: Path) -> None:
    text = VALID_ENTRY + 'set_claims = { note = "a{padding:3}b{padding}c" }\n'
    minted, _ = _mint_sample(_load_sample(tmp_path, text))
    assert minted is not None
    assert minted.claims["note"] == "axxxbc"


def test_mint_placeholder_missing_for_profile(tmp_path: Path) -> None:
    text = VALID_ENTRY + 'set_claims = { scope = "{poll}:{dir}" }\n'
    variant = _load_sample(tmp_path, text)
    with pytest.raises(ConfigurationError) as info:
        _mint_sample(variant, "wlcg-1.0")
    message = str(info.value)
    assert "sample" in message
    assert "wlcg-1.0" in message
    assert "{poll}" in message


def test_mint_any_audience_missing_for_rfc9068(tmp_path: Path) -> None:
    text = VALID_ENTRY + 'set_claims = { aud = "{any_audience}" }\n'
    with pytest.raises(ConfigurationError, match=r"\{any_audience\}"):
        _mint_sample(_load_sample(tmp_path, text), "rfc9068")


def test_mint_version_claim_for_wlcg() -> None:
    minted, _ = _mint("unsupported-version", profile="wlcg-1.3")
    assert minted is not None
    assert minted.claims["wlcg.ver"] == "99.0"
    assert "ver" not in minted.claims


def test_mint_version_claim_for_scitokens() -> None:
    minted, _ = _mint("unsupported-version", profile="scitokens-2.0")
    assert minted is not None
    assert minted.claims["ver"] == "scitoken:99.0"
    assert "wlcg.ver" not in minted.claims


def test_mint_version_missing_removes_claim() -> None:
    minted, _ = _mint("version-missing", profile="scitokens-2.0")
    assert minted is not None
    assert "ver" not in minted.claims


# --- signed tokens and transforms ----------------------------------------------


def test_signed_valid_token_verifies(
    signing_issuer: SigningIssuer, private_keys: dict[str, Any]
) -> None:
    minted = _mint_signed("valid", signing_issuer)
    public_key = private_keys["kid-rs"].public_key()
    claims = jwt.decode(
        minted.token, public_key, algorithms=["RS256"], audience=AUDIENCE
    )
    assert claims == minted.claims
    assert jwt.get_unverified_header(minted.token) == minted.header


def test_signed_es256_token_verifies(
    signing_issuer: SigningIssuer, private_keys: dict[str, Any]
) -> None:
    minted = _mint_signed("valid-es256", signing_issuer, profile="scitokens-2.0")
    public_key = private_keys["kid-es"].public_key()
    claims = jwt.decode(
        minted.token, public_key, algorithms=["ES256"], audience=AUDIENCE
    )
    assert claims["ver"] == "scitoken:2.0"
    assert jwt.get_unverified_header(minted.token) == {"alg": "ES256", "kid": "kid-es"}


def test_signed_kid_of_other_key(
    signing_issuer: SigningIssuer, private_keys: dict[str, Any]
) -> None:
    minted = _mint_signed("kid-of-other-key", signing_issuer)
    assert jwt.get_unverified_header(minted.token)["kid"] == "kid-es"
    rs_public = private_keys["kid-rs"].public_key()
    claims = jwt.decode(
        minted.token, rs_public, algorithms=["RS256"], audience=AUDIENCE
    )
    assert claims == minted.claims


def test_transform_drops_signature_segment(
    signing_issuer: SigningIssuer, private_keys: dict[str, Any]
) -> None:
    minted = _mint_signed("two-segments", signing_issuer)
    original = signing_issuer.tokens[0]
    assert minted.token == original.rsplit(".", 1)[0]
    assert len(minted.token.split(".")) == 2
    with pytest.raises(jwt.DecodeError):
        jwt.decode(
            minted.token,
            private_keys["kid-rs"].public_key(),
            algorithms=["RS256"],
            audience=AUDIENCE,
        )


def test_transform_adds_extra_segment(
    signing_issuer: SigningIssuer, private_keys: dict[str, Any]
) -> None:
    minted = _mint_signed("four-segments", signing_issuer)
    original = signing_issuer.tokens[0].split(".")
    parts = minted.token.split(".")
    assert len(parts) == 4
    assert parts[:3] == original
    assert parts[3] == original[0]
    with pytest.raises(jwt.DecodeError):
        jwt.decode(
            minted.token,
            private_keys["kid-rs"].public_key(),
            algorithms=["RS256"],
            audience=AUDIENCE,
        )
    with pytest.raises(TokenError, match="found 4"):
        decode_unverified(minted.token)


def test_transform_pads_segments(signing_issuer: SigningIssuer) -> None:
    minted = _mint_signed("padded-base64", signing_issuer)
    original = signing_issuer.tokens[0].split(".")
    parts = minted.token.split(".")
    assert len(parts) == 3
    assert all(len(part) % 4 == 0 for part in parts)
    assert [part.rstrip("=") for part in parts] == original
    # An RS256 signature with a 2048-bit key has 256 bytes, which encode to 342
    # base64url characters, so padding always adds "==".
    assert parts[2].endswith("==")
    assert decode_unverified(minted.token) == (minted.header, minted.claims)


def test_transform_header_not_json(signing_issuer: SigningIssuer) -> None:
    minted = _mint_signed("header-not-json", signing_issuer)
    original = signing_issuer.tokens[0].split(".")
    parts = minted.token.split(".")
    assert len(parts) == 3
    assert parts[1:] == original[1:]
    assert _b64decode(parts[0]) == b"this is not JSON"
    with pytest.raises(jwt.DecodeError):
        jwt.get_unverified_header(minted.token)
    with pytest.raises(TokenError, match="cannot decode"):
        decode_unverified(minted.token)


def test_transform_token_unknown_name() -> None:
    with pytest.raises(ConfigurationError, match="unknown transform 'reverse'"):
        transform_token("a.b.c", "reverse")


def test_transform_applies_after_minting() -> None:
    minted, issuer = _mint("two-segments")
    assert minted is not None
    assert minted.token == "header1.claims1"
    assert issuer.calls[0]["signature"] == "valid"


# --- cases ---------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("profile", DEFAULT_PROFILES)
def test_cases_for_scenario_and_profile(scenario: str, profile: str) -> None:
    cases = cases_for(scenario, [profile])
    if scenario == "tpc" and profile != "wlcg-1.0":
        assert cases == []
        return
    if scenario == "tape":
        # Stage and poll exist only from WLCG 1.3 on.
        assert cases == []
        assert cases_for("tape", ["wlcg-1.3"])
        return
    assert cases
    assert {case.scenario for case in cases} == {scenario}
    assert {case.profile for case in cases} == {profile}


def test_case_ids_unique_per_scenario() -> None:
    for scenario in SCENARIOS:
        ids = [case.id for case in cases_for(scenario, ALL_PROFILES)]
        assert len(ids) == len(set(ids)), scenario


def test_cases_have_section_and_requirement() -> None:
    for scenario in SCENARIOS:
        for case in cases_for(scenario, ALL_PROFILES):
            assert case.section.strip(), case.id
            assert case.requirement in REQUIREMENTS, case.id
            assert case.expected in VERDICTS, case.id


def test_cases_per_storage_at_least_30() -> None:
    total = sum(len(cases_for(s, DEFAULT_PROFILES)) for s in SCENARIOS)
    assert total >= 30


def test_storage_cases_have_grants() -> None:
    for scenario in SCENARIOS:
        if scenario in ("token-rejection", "compliance", "tpc"):
            continue
        for case in cases_for(scenario, DEFAULT_PROFILES):
            assert isinstance(case, StorageCase), case.id
            assert case.grants, case.id
            assert case.variant is None, case.id


@pytest.mark.parametrize("profiles", [DEFAULT_PROFILES, ALL_PROFILES, ["rfc9068"]])
def test_rejection_cases_one_per_variant_and_profile(profiles: list[str]) -> None:
    cases = cases_for("token-rejection", profiles)
    expected = sum(
        len(set(v.profiles) & set(profiles)) for v in load_variants().values()
    )
    assert len(cases) == expected
    assert all(isinstance(case, RejectionCase) for case in cases)


def test_rejection_cases_skip_restricted_variants() -> None:
    names = {case.name for case in rejection_cases(["rfc9068"])}
    assert "valid" in names
    assert "stage-scope-reads" not in names
    assert "any-audience" not in names
    assert "newer-minor-version" not in names


def test_rejection_case_carries_variant() -> None:
    cases = cases_for("token-rejection", ["scitokens-2.0"])
    case = next(c for c in cases if c.name == "expired")
    variant = get_variant("expired")
    assert case.variant == "expired"
    assert case.token_variant == variant
    assert case.section == variant.section("scitokens-2.0")
    assert case.expected == variant.expected_for("scitokens-2.0")
    assert case.requirement == variant.requirement_for("scitokens-2.0")


@pytest.mark.parametrize(
    ("profile", "expected", "requirement"),
    [("wlcg-1.3", "reject", "MUST"), ("scitokens-2.0", "either", "MAY")],
)
def test_rejection_case_uses_profile_verdict(
    profile: str, expected: str, requirement: str
) -> None:
    case = next(c for c in rejection_cases([profile]) if c.name == "kid-missing")
    assert case.id == f"{profile}-kid-missing"
    assert case.expected == expected
    assert case.requirement == requirement
    assert case.section == get_variant("kid-missing").section(profile)


def test_case_id_prefixes_profile() -> None:
    case = cases_for("download", ["wlcg-1.0"])[0]
    assert case.id == f"wlcg-1.0-{case.name}"


def test_cases_for_no_profiles_is_empty() -> None:
    assert cases_for("download", []) == []
    assert cases_for("token-rejection", []) == []


def test_profiles_with_cases_are_all_profiles() -> None:
    assert profiles_with_cases() == set(ALL_PROFILES)


def test_resolve_scenarios_returns_names() -> None:
    assert resolve_scenarios(["upload", "download"]) == ["upload", "download"]


def test_resolve_scenarios_unknown_lists_valid() -> None:
    with pytest.raises(UsageError, match="unknown scenario 'nosuch'") as info:
        resolve_scenarios(["download", "nosuch"])
    for name in SCENARIOS:
        assert name in str(info.value)
