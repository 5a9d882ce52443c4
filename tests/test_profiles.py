"""Tests of testbed.profiles: the shipped profile files and the loader's checks."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from testbed.errors import ConfigurationError, UsageError
from testbed.profiles import (
    NO_AUDIENCE,
    PROFILES_DIR,
    get_profile,
    load_profile,
    load_profiles,
)

WLCG_FILE = PROFILES_DIR / "wlcg-1.0.toml"
SHIPPED = {
    "rfc9068",
    "scitokens-1.0",
    "scitokens-2.0",
    "wlcg-1.0",
    "wlcg-1.3",
    "wlcg-2.0-draft",
}

# A profile file that extends wlcg-1.0. Tests append the tables they override.
CHILD_PROFILE = """\
name = "child"
title = "A profile that extends wlcg-1.0"
specification = "https://example.test/child"
extends = "wlcg-1.0"
"""


def _write_edited_profile(
    tmp_path: Path, old: str, new: str, name: str = "wlcg-1.0.toml"
) -> Path:
    """Write the shipped WLCG profile with its only ``old`` replaced by ``new``."""
    text = WLCG_FILE.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {WLCG_FILE}"
    path = tmp_path / name
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _copy_shipped(tmp_path: Path, *names: str) -> None:
    for name in names:
        source = PROFILES_DIR / f"{name}.toml"
        (tmp_path / source.name).write_bytes(source.read_bytes())


def _extends(name: str) -> str | None:
    """Return the ``extends`` field of a shipped profile file."""
    path = PROFILES_DIR / f"{name}.toml"
    value = tomllib.loads(path.read_text(encoding="utf-8")).get("extends")
    assert value is None or isinstance(value, str)
    return value


def _load_error(path: Path) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_profile(path)
    return str(info.value)


# --- the shipped profiles ------------------------------------------------------


def test_shipped_profiles_load() -> None:
    assert set(load_profiles()) == SHIPPED


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_profile_source_is_its_file(name: str) -> None:
    assert get_profile(name).source == PROFILES_DIR / f"{name}.toml"


def test_only_draft_is_draft() -> None:
    statuses = {name: profile.status for name, profile in load_profiles().items()}
    assert statuses.pop("wlcg-2.0-draft") == "draft"
    assert set(statuses.values()) == {"published"}


def test_wlcg_version_claim() -> None:
    profile = get_profile("wlcg-1.0")
    assert profile.version_claim == "wlcg.ver"
    assert profile.fixed_claims == {"wlcg.ver": "1.0"}
    assert profile.accepted_versions is None


def test_wlcg_required_claims() -> None:
    profile = get_profile("wlcg-1.0")
    assert set(profile.required_claims) == {
        "sub",
        "exp",
        "iss",
        "wlcg.ver",
        "aud",
        "iat",
        "jti",
    }


def test_wlcg_lifetimes() -> None:
    profile = get_profile("wlcg-1.0")
    assert profile.maximum_lifetime == 21600
    assert profile.default_lifetime <= profile.maximum_lifetime
    assert profile.expiry_leeway == 60


def test_wlcg_algorithms() -> None:
    profile = get_profile("wlcg-1.0")
    assert set(profile.algorithms) == {"RS256", "ES256"}
    assert profile.default_algorithm == "RS256"


def test_wlcg_header_requires_kid() -> None:
    profile = get_profile("wlcg-1.0")
    assert set(profile.required_header) == {"alg", "kid"}
    assert profile.header_fields == {}
    assert profile.typ_values == ()


def test_wlcg_accepts_only_own_version() -> None:
    profile = get_profile("wlcg-1.0")
    assert profile.version_supported("1.0")
    assert not profile.version_supported("1.3")
    assert not profile.version_supported("1.9")
    assert not profile.version_supported("2.0")


def test_wlcg_stage_implies_read() -> None:
    profile = get_profile("wlcg-1.0")
    assert profile.stage_implies_read is True
    assert profile.scope("stage", "/data") == "storage.stage:/data"
    assert "poll" not in profile.scope_names


def test_wlcg13_extends_wlcg10() -> None:
    assert _extends("wlcg-1.3") == "wlcg-1.0"


def test_wlcg13_inherits_wlcg10_tables() -> None:
    parent, profile = get_profile("wlcg-1.0"), get_profile("wlcg-1.3")
    assert profile.algorithms == parent.algorithms
    assert profile.default_algorithm == parent.default_algorithm
    assert profile.required_header == parent.required_header
    assert profile.required_claims == parent.required_claims
    assert profile.default_lifetime == parent.default_lifetime
    assert profile.maximum_lifetime == parent.maximum_lifetime
    assert profile.any_audience == parent.any_audience
    assert profile.path_required is True


def test_wlcg13_carries_version_one() -> None:
    profile = get_profile("wlcg-1.3")
    assert profile.version_claim == "wlcg.ver"
    assert profile.fixed_claims == {"wlcg.ver": "1.0"}


def test_wlcg13_accepts_newer_minor_versions() -> None:
    profile = get_profile("wlcg-1.3")
    assert profile.version_supported("1.0")
    assert profile.version_supported("1.3")
    assert profile.version_supported("1.9")
    assert profile.version_supported("1.10")


def test_wlcg13_rejects_other_versions() -> None:
    profile = get_profile("wlcg-1.3")
    assert not profile.version_supported("2.0")
    assert not profile.version_supported("99.0")
    assert not profile.version_supported("1")
    assert not profile.version_supported("1.x")
    assert not profile.version_supported("1.0 ")
    assert not profile.version_supported(1.0)
    assert not profile.version_supported(None)


def test_wlcg13_stage_does_not_read() -> None:
    profile = get_profile("wlcg-1.3")
    assert profile.stage_implies_read is False
    assert profile.scope("stage", "/data") == "storage.stage:/data"


def test_wlcg13_has_poll_scope() -> None:
    profile = get_profile("wlcg-1.3")
    assert profile.scope("poll", "/data") == "storage.poll:/data"
    assert profile.scope("read", "/data") == "storage.read:/data"


def test_rfc9068_requires_typ() -> None:
    profile = get_profile("rfc9068")
    assert "typ" in profile.required_header
    assert "kid" not in profile.required_header
    assert profile.typ_values == ("at+jwt", "application/at+jwt")
    assert profile.header_fields == {"typ": "at+jwt"}


def test_rfc9068_requires_client_id() -> None:
    required = set(get_profile("rfc9068").required_claims)
    assert required == {"iss", "exp", "aud", "sub", "client_id", "iat", "jti"}


def test_rfc9068_has_no_version_or_any_audience() -> None:
    profile = get_profile("rfc9068")
    assert profile.version_claim == ""
    assert profile.fixed_claims == {}
    assert profile.version_supported("anything")
    assert profile.any_audience == ""
    assert profile.audience_required is True


def test_rfc9068_issuer_settings() -> None:
    settings = get_profile("rfc9068").issuer_settings()
    assert settings["header"] == {"typ": "at+jwt"}
    assert settings["claims"] == {}
    assert settings["default_audience"] == NO_AUDIENCE


def test_scitokens_version_claim() -> None:
    profile = get_profile("scitokens-2.0")
    assert profile.version_claim == "ver"
    assert profile.fixed_claims == {"ver": "scitoken:2.0"}


def test_scitokens_accepts_only_singular_version() -> None:
    profile = get_profile("scitokens-2.0")
    assert profile.version_supported("scitoken:2.0")
    assert not profile.version_supported("scitokens:2.0")
    assert not profile.version_supported("scitoken:1.0")


def test_scitokens_requires_aud() -> None:
    profile = get_profile("scitokens-2.0")
    assert "aud" in profile.required_claims
    assert profile.audience_required is True
    assert profile.any_audience == "ANY"


def test_scitokens10_has_no_version() -> None:
    profile = get_profile("scitokens-1.0")
    assert profile.version_claim == ""
    assert profile.fixed_claims == {}
    assert "ver" not in profile.required_claims
    assert profile.version_supported("scitoken:1.0")


def test_scitokens10_audience_optional() -> None:
    profile = get_profile("scitokens-1.0")
    assert profile.audience_required is False
    assert "aud" not in profile.required_claims
    assert profile.any_audience == "ANY"


def test_scitokens10_scopes() -> None:
    profile = get_profile("scitokens-1.0")
    assert profile.scope("read", "/data") == "read:/data"
    assert profile.scope("create", "/data") == "write:/data"


def test_draft_extends_wlcg13() -> None:
    assert _extends("wlcg-2.0-draft") == "wlcg-1.3"


def test_draft_requires_typ() -> None:
    profile = get_profile("wlcg-2.0-draft")
    assert set(profile.required_header) == {"alg", "kid", "typ"}
    assert profile.typ_values == ("at+jwt", "application/at+jwt")
    assert profile.header_fields == {"typ": "at+jwt"}


def test_draft_version_two() -> None:
    profile = get_profile("wlcg-2.0-draft")
    assert profile.fixed_claims == {"wlcg.ver": "2.0"}
    assert profile.version_supported("2.0")
    assert profile.version_supported("2.5")
    assert not profile.version_supported("1.0")
    assert not profile.version_supported("3.0")


def test_draft_inherits_wlcg13_scopes() -> None:
    profile = get_profile("wlcg-2.0-draft")
    assert "client_id" in profile.required_claims
    assert profile.stage_implies_read is False
    assert profile.scope("poll", "/data") == "storage.poll:/data"
    assert profile.expiry_leeway == get_profile("wlcg-1.3").expiry_leeway


def test_get_profile_unknown_lists_valid() -> None:
    with pytest.raises(UsageError, match="unknown profile 'nosuch'") as info:
        get_profile("nosuch")
    for name in SHIPPED:
        assert name in str(info.value)


# --- claims and scopes ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_baseline_claims_has_required(name: str) -> None:
    profile = get_profile(name)
    claims = profile.baseline_claims(
        "https://issuer.test", "https://storage.test", "x:/", now=1000
    )
    missing = set(profile.required_claims) - set(claims)
    assert not missing


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_baseline_claims_version_supported(name: str) -> None:
    profile = get_profile(name)
    claims = profile.baseline_claims("i", "a", "s", now=1)
    assert profile.version_supported(claims.get(profile.version_claim))


def test_baseline_claims_values() -> None:
    profile = get_profile("wlcg-1.0")
    claims = profile.baseline_claims(
        "https://issuer.test",
        ["https://a.test", "https://b.test"],
        "storage.read:/",
        subject="alice",
        now=1000,
    )
    assert claims["iss"] == "https://issuer.test"
    assert claims["aud"] == ["https://a.test", "https://b.test"]
    assert claims["sub"] == "alice"
    assert claims["scope"] == "storage.read:/"
    assert claims["iat"] == 1000
    assert claims["nbf"] == 1000
    assert claims["exp"] == 1000 + profile.default_lifetime
    assert claims["wlcg.ver"] == "1.0"


def test_baseline_claims_lifetime() -> None:
    profile = get_profile("scitokens-2.0")
    claims = profile.baseline_claims("i", "a", "read:/", now=1000, lifetime=30)
    assert claims["exp"] == 1030


def test_baseline_claims_jti_unique() -> None:
    profile = get_profile("wlcg-1.0")
    first = profile.baseline_claims("i", "a", "s", now=1)
    second = profile.baseline_claims("i", "a", "s", now=1)
    assert first["jti"] != second["jti"]


def test_scope_wlcg() -> None:
    profile = get_profile("wlcg-1.0")
    assert profile.scope("read", "/data") == "storage.read:/data"
    assert profile.scope("create", "/data") == "storage.create:/data"
    assert profile.scope("modify", "/data") == "storage.modify:/data"


def test_scope_scitokens() -> None:
    profile = get_profile("scitokens-2.0")
    assert profile.scope("read", "/data") == "read:/data"
    assert profile.scope("create", "/data") == "write:/data"
    assert profile.scope("modify", "/data") == "write:/data"


def test_scope_unknown_operation() -> None:
    with pytest.raises(UsageError, match="no scope for operation 'delete'"):
        get_profile("wlcg-1.0").scope("delete", "/")


def test_scope_poll_missing_in_wlcg10() -> None:
    with pytest.raises(UsageError, match="no scope for operation 'poll'") as info:
        get_profile("wlcg-1.0").scope("poll", "/")
    assert "stage" in str(info.value)


def test_issuer_settings() -> None:
    settings = get_profile("wlcg-1.0").issuer_settings()
    assert settings["claims"] == {"wlcg.ver": "1.0"}
    assert settings["max_lifetime"] == 21600
    assert settings["default_audience"] == "https://wlcg.cern.ch/jwt/v1/any"
    assert settings["alg"] == "RS256"


# --- loading and checking a profile file ---------------------------------------


def test_copy_of_shipped_file_loads(tmp_path: Path) -> None:
    path = _write_edited_profile(tmp_path, 'title = "', 'title = "Copy of ')
    assert load_profile(path).title.startswith("Copy of ")


def test_extends_merges_field_by_field(tmp_path: Path) -> None:
    _copy_shipped(tmp_path, "wlcg-1.0")
    text = CHILD_PROFILE + '\n[scopes]\nread = "storage.fetch"\n'
    profile = load_profile(_write(tmp_path, "child", text))
    parent = get_profile("wlcg-1.0")
    assert profile.name == "child"
    assert profile.title == "A profile that extends wlcg-1.0"
    assert profile.scope("read", "/d") == "storage.fetch:/d"
    assert profile.scope("create", "/d") == "storage.create:/d"
    assert profile.stage_implies_read is True
    assert profile.required_claims == parent.required_claims
    assert profile.fixed_claims == parent.fixed_claims
    assert profile.source == tmp_path / "child.toml"


def test_extends_replaces_fixed_claims(tmp_path: Path) -> None:
    _copy_shipped(tmp_path, "wlcg-1.0")
    text = CHILD_PROFILE + '\n[claims]\nfixed = { "wlcg.ver" = "1.5" }\n'
    profile = load_profile(_write(tmp_path, "child", text))
    assert profile.fixed_claims == {"wlcg.ver": "1.5"}
    assert profile.version_supported("1.5")
    assert not profile.version_supported("1.0")


def test_extends_chain(tmp_path: Path) -> None:
    _copy_shipped(tmp_path, "wlcg-1.0", "wlcg-1.3")
    text = CHILD_PROFILE.replace('"wlcg-1.0"', '"wlcg-1.3"')
    profile = load_profile(_write(tmp_path, "child", text))
    assert profile.scope("poll", "/d") == "storage.poll:/d"
    assert profile.version_supported("1.9")
    assert profile.expiry_leeway == 0


def test_extends_does_not_inherit_status(tmp_path: Path) -> None:
    _copy_shipped(tmp_path, "wlcg-1.0", "wlcg-1.3", "wlcg-2.0-draft")
    text = CHILD_PROFILE.replace('"wlcg-1.0"', '"wlcg-2.0-draft"')
    profile = load_profile(_write(tmp_path, "child", text))
    assert profile.status == "published"
    assert profile.typ_values == ("at+jwt", "application/at+jwt")


def test_load_profile_rejects_missing_parent(tmp_path: Path) -> None:
    path = _write(tmp_path, "child", CHILD_PROFILE)
    message = _load_error(path)
    assert str(path) in message
    assert "'extends'" in message
    assert "'wlcg-1.0'" in message
    assert "wlcg-1.0.toml" in message


def test_load_profile_rejects_extends_type(tmp_path: Path) -> None:
    text = CHILD_PROFILE.replace('extends = "wlcg-1.0"', "extends = 1")
    message = _load_error(_write(tmp_path, "child", text))
    assert "'extends'" in message
    assert "must be a profile name" in message


def test_load_profile_rejects_extends_cycle(tmp_path: Path) -> None:
    first = _write(tmp_path, "first", 'name = "first"\nextends = "second"\n')
    _write(tmp_path, "second", 'name = "second"\nextends = "first"\n')
    message = _load_error(first)
    assert "'extends'" in message
    assert "forms a cycle" in message
    assert str(tmp_path) in message


def test_load_profile_rejects_self_extends(tmp_path: Path) -> None:
    path = _write(tmp_path, "loop", 'name = "loop"\nextends = "loop"\n')
    message = _load_error(path)
    assert str(path) in message
    assert "'extends'" in message
    assert "forms a cycle" in message


def test_load_profile_rejects_bad_version_regex(tmp_path: Path) -> None:
    path = _write_edited_profile(
        tmp_path,
        'version_claim = "wlcg.ver"',
        "version_claim = \"wlcg.ver\"\naccepted_versions = '1\\.('",
    )
    message = _load_error(path)
    assert str(path) in message
    assert "'claims.accepted_versions'" in message
    assert "not a regular expression" in message


def test_load_profile_rejects_versions_without_own(tmp_path: Path) -> None:
    path = _write_edited_profile(
        tmp_path,
        'version_claim = "wlcg.ver"',
        "version_claim = \"wlcg.ver\"\naccepted_versions = '2\\.[0-9]+'",
    )
    message = _load_error(path)
    assert "'claims.accepted_versions'" in message
    assert "does not match the profile's own version" in message


def test_accepted_versions_loads(tmp_path: Path) -> None:
    path = _write_edited_profile(
        tmp_path,
        'version_claim = "wlcg.ver"',
        "version_claim = \"wlcg.ver\"\naccepted_versions = '1\\.[0-4]'",
    )
    profile = load_profile(path)
    assert profile.version_supported("1.4")
    assert not profile.version_supported("1.5")


def test_load_profile_rejects_typ_outside_header_typ(tmp_path: Path) -> None:
    path = _write_edited_profile(
        tmp_path,
        "fields = {}",
        'fields = { typ = "JWT" }\ntyp = ["at+jwt"]',
    )
    message = _load_error(path)
    assert str(path) in message
    assert "'header.fields.typ'" in message
    assert "['at+jwt']" in message


def test_load_profile_rejects_header_typ_without_field(tmp_path: Path) -> None:
    path = _write_edited_profile(tmp_path, "fields = {}", 'fields = {}\ntyp = ["JWT"]')
    message = _load_error(path)
    assert "'header.fields.typ'" in message


def test_load_profile_rejects_empty_header_typ(tmp_path: Path) -> None:
    path = _write_edited_profile(tmp_path, "fields = {}", "fields = {}\ntyp = []")
    message = _load_error(path)
    assert "'header.typ'" in message
    assert "non-empty list of strings" in message


def test_header_typ_loads(tmp_path: Path) -> None:
    path = _write_edited_profile(
        tmp_path, "fields = {}", 'fields = { typ = "JWT" }\ntyp = ["JWT", "at+jwt"]'
    )
    profile = load_profile(path)
    assert profile.typ_values == ("JWT", "at+jwt")
    assert profile.header_fields == {"typ": "JWT"}


def test_load_profile_rejects_bad_status(tmp_path: Path) -> None:
    path = _write_edited_profile(tmp_path, 'title = "', 'status = "retired"\ntitle = "')
    message = _load_error(path)
    assert str(path) in message
    assert "'status'" in message
    assert "'retired'" in message


def test_load_profile_rejects_stage_implies_read_type(tmp_path: Path) -> None:
    path = _write_edited_profile(
        tmp_path, "stage_implies_read = true", 'stage_implies_read = "yes"'
    )
    message = _load_error(path)
    assert "'scopes.stage_implies_read'" in message
    assert "bool" in message


def test_load_profile_rejects_audience_required_type(tmp_path: Path) -> None:
    path = _write_edited_profile(
        tmp_path, "[audience]\n", '[audience]\nrequired = "no"\n'
    )
    message = _load_error(path)
    assert "'audience.required'" in message


def test_load_profile_rejects_toml_syntax_error(tmp_path: Path) -> None:
    path = _write_edited_profile(tmp_path, "maximum = 21600", "maximum = = 21600")
    message = _load_error(path)
    assert str(path) in message
    assert "invalid TOML" in message


def test_load_profile_rejects_unknown_table(tmp_path: Path) -> None:
    path = _write_edited_profile(
        tmp_path, "[audience]", "[extras]\nx = 1\n\n[audience]"
    )
    message = _load_error(path)
    assert str(path) in message
    assert "'extras'" in message
    assert "not a known table" in message


def test_load_profile_rejects_unknown_field(tmp_path: Path) -> None:
    path = _write_edited_profile(
        tmp_path, "maximum = 21600", "maximum = 21600\nmax = 1"
    )
    message = _load_error(path)
    assert str(path) in message
    assert "'lifetime.max'" in message
    assert "not a known field" in message


def test_load_profile_rejects_wrong_type(tmp_path: Path) -> None:
    path = _write_edited_profile(tmp_path, "maximum = 21600", 'maximum = "6h"')
    message = _load_error(path)
    assert str(path) in message
    assert "'lifetime.maximum'" in message
    assert "int" in message


def test_load_profile_rejects_bool_lifetime(tmp_path: Path) -> None:
    path = _write_edited_profile(tmp_path, "maximum = 21600", "maximum = true")
    message = _load_error(path)
    assert "'lifetime.maximum'" in message
    assert "must be an integer" in message


def test_load_profile_rejects_missing_field(tmp_path: Path) -> None:
    path = _write_edited_profile(tmp_path, "expiry_leeway = 60\n", "")
    message = _load_error(path)
    assert str(path) in message
    assert "'lifetime.expiry_leeway'" in message
    assert "is missing" in message


def test_load_profile_rejects_missing_table(tmp_path: Path) -> None:
    path = _write_edited_profile(
        tmp_path, '[audience]\nany = "https://wlcg.cern.ch/jwt/v1/any"\n', ""
    )
    message = _load_error(path)
    assert str(path) in message
    assert "'audience'" in message
    assert "is missing" in message


def test_load_profile_rejects_name_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_bytes(WLCG_FILE.read_bytes())
    message = _load_error(path)
    assert str(path) in message
    assert "'name'" in message
    assert "other.toml" in message


def test_load_profile_rejects_default_algorithm(tmp_path: Path) -> None:
    path = _write_edited_profile(
        tmp_path, 'default_algorithm = "RS256"', 'default_algorithm = "HS256"'
    )
    message = _load_error(path)
    assert str(path) in message
    assert "'header.default_algorithm'" in message
    assert "not in header.algorithms" in message


def test_load_profile_rejects_symmetric_algorithm(tmp_path: Path) -> None:
    path = _write_edited_profile(
        tmp_path, 'algorithms = ["RS256", "ES256"]', 'algorithms = ["RS256", "HS256"]'
    )
    message = _load_error(path)
    assert "'header.algorithms'" in message
    assert "HS256" in message
    assert "asymmetric" in message


def test_load_profile_rejects_default_above_maximum(tmp_path: Path) -> None:
    path = _write_edited_profile(tmp_path, "default = 1200", "default = 30000")
    message = _load_error(path)
    assert "'lifetime.default'" in message


def test_load_profile_rejects_unset_version_claim(tmp_path: Path) -> None:
    path = _write_edited_profile(
        tmp_path, 'version_claim = "wlcg.ver"', 'version_claim = "ver"'
    )
    message = _load_error(path)
    assert "'claims.version_claim'" in message


def test_load_profile_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    message = _load_error(path)
    assert str(path) in message
    assert "cannot read" in message


def test_load_profiles_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no profile files"):
        load_profiles(tmp_path)


def test_load_profiles_directory_with_extends(tmp_path: Path) -> None:
    _copy_shipped(tmp_path, "wlcg-1.0", "wlcg-1.3")
    profiles = load_profiles(tmp_path)
    assert set(profiles) == {"wlcg-1.0", "wlcg-1.3"}
    assert profiles["wlcg-1.3"].version_supported("1.9")
