"""Tests of testbed.variants and testbed.cases.

The variants file, its checks and minting, then the cases that scenarios run, which
combine the storage cases with the variants.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from testbed.cases import (
    SCENARIOS,
    RejectionCase,
    StorageCase,
    cases_for,
    profiles_with_cases,
    resolve_scenarios,
)
from testbed.errors import ConfigurationError, UsageError
from testbed.profiles import get_profile, load_profiles
from testbed.variants import (
    REQUIREMENTS,
    VERDICTS,
    get_variant,
    load_variants,
    mint_variant,
    resolve_time,
)

AUDIENCE = "https://storage.test:1094"
SCOPE = "storage.read:/cells/abc"
DEFAULT_PROFILES = ["wlcg-1.0", "scitokens-2.0"]
KIDS = {"rs256": "kid-rs", "es256": "kid-es", "unpublished": "kid-unpublished"}

VALID_ENTRY = """\
[[variant]]
id = "sample"
summary = "a sample variant"
expected = "reject"
requirement = "MUST"
sections."wlcg-1.0" = "WLCG 1.0, Token Verification"
"""


class RecordingIssuer:
    """An IssuerClient stand-in that records what mint() receives."""

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
        return f"minted-{len(self.calls)}"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "variants.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _load_error(path: Path) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_variants(path)
    return str(info.value)


def _mint(variant_id: str, profile: str = "wlcg-1.0") -> tuple[Any, RecordingIssuer]:
    issuer = RecordingIssuer()
    minted = mint_variant(
        get_variant(variant_id), get_profile(profile), issuer, KIDS, AUDIENCE, SCOPE
    )
    return minted, issuer


def test_shipped_variants_load() -> None:
    assert len(load_variants()) >= 9


def test_shipped_variant_ids_match_keys() -> None:
    variants = load_variants()
    assert all(key == variant.id for key, variant in variants.items())


def test_shipped_variants_name_known_profiles() -> None:
    for variant in load_variants().values():
        assert variant.sections, variant.id
        assert set(variant.sections) <= set(load_profiles()), variant.id


def test_most_shipped_variants_cover_both_profiles() -> None:
    both = [v for v in load_variants().values() if len(v.sections) == 2]
    assert len(both) >= 10


def test_shipped_variants_have_sections_text() -> None:
    for variant in load_variants().values():
        assert all(text.strip() for text in variant.sections.values()), variant.id


def test_shipped_variants_have_known_verdicts() -> None:
    for variant in load_variants().values():
        assert variant.expected in VERDICTS, variant.id
        assert variant.requirement in REQUIREMENTS, variant.id


def test_shipped_variants_include_named() -> None:
    names = {"valid", "no-token", "expired", "wrong-audience", "alg-none"}
    assert names <= set(load_variants())


def test_get_variant_unknown_lists_valid() -> None:
    with pytest.raises(UsageError, match="unknown variant 'nosuch'") as info:
        get_variant("nosuch")
    assert "expired" in str(info.value)


def test_sample_file_loads(tmp_path: Path) -> None:
    variant = load_variants(_write(tmp_path, VALID_ENTRY))["sample"]
    assert variant.expected == "reject"
    assert variant.signature == "valid"
    assert variant.key == "rs256"
    assert variant.omit_token is False


def test_load_variants_rejects_unknown_field(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'colour = "red"\n')
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "'colour'" in message


def test_load_variants_rejects_bad_expected(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace('expected = "reject"', 'expected = "refuse"')
    path = _write(tmp_path, text)
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "expected must be one of" in message


def test_load_variants_rejects_bad_requirement(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace('requirement = "MUST"', 'requirement = "must"')
    path = _write(tmp_path, text)
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "requirement must be one of" in message


def test_load_variants_rejects_unknown_profile(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'sections."wlcg-9.9" = "x"\n')
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "sections" in message
    assert "'wlcg-9.9'" in message


def test_load_variants_rejects_bad_time(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'set_claims = { exp = "now+x" }\n')
    message = _load_error(path)
    assert str(path) in message
    assert "'sample'" in message
    assert "set_claims.exp" in message
    assert "'now+x'" in message


def test_load_variants_rejects_wrong_type(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'omit_token = "yes"\n')
    message = _load_error(path)
    assert "'sample'" in message
    assert "'omit_token'" in message
    assert "wrong type" in message


def test_load_variants_rejects_missing_field(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY.replace('summary = "a sample variant"\n', ""))
    message = _load_error(path)
    assert "'sample'" in message
    assert "'summary'" in message
    assert "is missing" in message


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


def test_resolve_time_now() -> None:
    assert resolve_time("now", 1000) == 1000


def test_resolve_time_offsets() -> None:
    assert resolve_time("now+60", 1000) == 1060
    assert resolve_time("now-600", 1000) == 400


def test_resolve_time_leaves_other_values() -> None:
    assert resolve_time("https://issuer.test", 1000) == "https://issuer.test"
    assert resolve_time(42, 1000) == 42
    assert resolve_time("now+x", 1000) == "now+x"


def test_mint_valid_uses_baseline() -> None:
    minted, issuer = _mint("valid")
    assert minted is not None
    header, claims, token = minted
    assert token == "minted-1"
    assert header == {"alg": "RS256", "kid": "kid-rs"}
    assert claims["aud"] == AUDIENCE
    assert claims["scope"] == SCOPE
    assert claims["iss"] == RecordingIssuer.issuer_url
    assert claims["wlcg.ver"] == "1.0"
    assert issuer.calls[0]["key"] == "kid-rs"
    assert issuer.calls[0]["signature"] == "valid"


def test_mint_sends_returned_header_and_claims() -> None:
    minted, issuer = _mint("expired")
    assert minted is not None
    assert issuer.calls[0]["header"] == minted[0]
    assert issuer.calls[0]["claims"] == minted[1]


def test_mint_expired_exp_in_past() -> None:
    before = int(time.time())
    minted, _ = _mint("expired")
    assert minted is not None
    claims = minted[1]
    assert claims["exp"] < before
    assert claims["iat"] < claims["exp"]


def test_mint_wrong_audience() -> None:
    minted, _ = _mint("wrong-audience")
    assert minted is not None
    assert minted[1]["aud"] != AUDIENCE
    assert minted[1]["aud"] == "https://other-storage.invalid:1094"


def test_mint_alg_none() -> None:
    minted, issuer = _mint("alg-none")
    assert minted is not None
    assert minted[0]["alg"] == "none"
    assert issuer.calls[0]["header"]["alg"] == "none"
    assert issuer.calls[0]["signature"] == "none"


def test_mint_es256_key() -> None:
    minted, issuer = _mint("valid-es256", profile="scitokens-2.0")
    assert minted is not None
    assert minted[0] == {"alg": "ES256", "kid": "kid-es"}
    assert issuer.calls[0]["key"] == "kid-es"
    assert minted[1]["ver"] == "scitoken:2.0"


def test_mint_unpublished_key() -> None:
    minted, issuer = _mint("unpublished-key")
    assert minted is not None
    assert minted[0]["kid"] == "kid-unpublished"
    assert issuer.calls[0]["key"] == "kid-unpublished"


def test_mint_bad_signature() -> None:
    _, issuer = _mint("bad-signature")
    assert issuer.calls[0]["signature"] == "corrupt"


def test_mint_no_token_returns_none() -> None:
    minted, issuer = _mint("no-token")
    assert minted is None
    assert issuer.calls == []


def test_mint_remove_claims(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ENTRY + 'remove_claims = ["jti", "absent"]\n')
    variant = load_variants(path)["sample"]
    minted = mint_variant(
        variant, get_profile("wlcg-1.0"), RecordingIssuer(), KIDS, AUDIENCE, SCOPE
    )
    assert minted is not None
    assert "jti" not in minted[1]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("profile", DEFAULT_PROFILES)
def test_cases_for_scenario_and_profile(scenario: str, profile: str) -> None:
    cases = cases_for(scenario, [profile])
    if scenario == "tpc" and profile != "wlcg-1.0":
        assert cases == []
        return
    assert cases
    assert {case.scenario for case in cases} == {scenario}
    assert {case.profile for case in cases} == {profile}


def test_case_ids_unique_per_scenario() -> None:
    for scenario in SCENARIOS:
        ids = [case.id for case in cases_for(scenario, DEFAULT_PROFILES)]
        assert len(ids) == len(set(ids)), scenario


def test_cases_have_section_and_requirement() -> None:
    for scenario in SCENARIOS:
        for case in cases_for(scenario, DEFAULT_PROFILES):
            assert case.section.strip(), case.id
            assert case.requirement in REQUIREMENTS, case.id
            assert case.expected in VERDICTS, case.id


def test_cases_per_storage_at_least_30() -> None:
    total = sum(len(cases_for(s, DEFAULT_PROFILES)) for s in SCENARIOS)
    assert total >= 30


def test_storage_cases_have_grants() -> None:
    for scenario in SCENARIOS:
        if scenario in ("token-rejection", "tpc"):
            continue
        for case in cases_for(scenario, DEFAULT_PROFILES):
            assert isinstance(case, StorageCase), case.id
            assert case.grants, case.id
            assert case.variant is None, case.id


def test_rejection_cases_one_per_variant_and_profile() -> None:
    cases = cases_for("token-rejection", DEFAULT_PROFILES)
    expected = sum(
        len(set(v.sections) & set(DEFAULT_PROFILES)) for v in load_variants().values()
    )
    assert len(cases) == expected
    assert all(isinstance(case, RejectionCase) for case in cases)


def test_rejection_case_carries_variant() -> None:
    cases = cases_for("token-rejection", ["scitokens-2.0"])
    case = next(c for c in cases if c.name == "expired")
    variant = get_variant("expired")
    assert case.variant == "expired"
    assert case.token_variant == variant
    assert case.section == variant.sections["scitokens-2.0"]
    assert case.expected == variant.expected


def test_case_id_prefixes_profile() -> None:
    case = cases_for("download", ["wlcg-1.0"])[0]
    assert case.id == f"wlcg-1.0-{case.name}"


def test_cases_for_no_profiles_is_empty() -> None:
    assert cases_for("download", []) == []
    assert cases_for("token-rejection", []) == []


def test_profiles_with_cases_are_defaults() -> None:
    assert profiles_with_cases() == set(DEFAULT_PROFILES)


def test_resolve_scenarios_returns_names() -> None:
    assert resolve_scenarios(["upload", "download"]) == ["upload", "download"]


def test_resolve_scenarios_unknown_lists_valid() -> None:
    with pytest.raises(UsageError, match="unknown scenario 'nosuch'") as info:
        resolve_scenarios(["download", "nosuch"])
    for name in SCENARIOS:
        assert name in str(info.value)
