"""Tests of testbed.profiles: the shipped profile files and the loader's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.errors import ConfigurationError, UsageError
from testbed.profiles import (
    PROFILES_DIR,
    get_profile,
    load_profile,
    load_profiles,
)

WLCG_FILE = PROFILES_DIR / "wlcg-1.0.toml"


def _write_edited_profile(
    tmp_path: Path, old: str, new: str, name: str = "wlcg-1.0.toml"
) -> Path:
    """Write the shipped WLCG profile with its only ``old`` replaced by ``new``."""
    text = WLCG_FILE.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {WLCG_FILE}"
    path = tmp_path / name
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def _load_error(path: Path) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_profile(path)
    return str(info.value)


def test_shipped_profiles_load() -> None:
    assert set(load_profiles()) == {"wlcg-1.0", "scitokens-2.0"}


def test_wlcg_version_claim() -> None:
    profile = get_profile("wlcg-1.0")
    assert profile.version_claim == "wlcg.ver"
    assert profile.fixed_claims == {"wlcg.ver": "1.0"}


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


def test_scitokens_version_claim() -> None:
    profile = get_profile("scitokens-2.0")
    assert profile.version_claim == "ver"
    assert profile.fixed_claims == {"ver": "scitoken:2.0"}


def test_scitokens_requires_aud() -> None:
    assert "aud" in get_profile("scitokens-2.0").required_claims


def test_profile_source_is_its_file() -> None:
    assert get_profile("wlcg-1.0").source == WLCG_FILE


def test_get_profile_unknown_lists_valid() -> None:
    with pytest.raises(UsageError, match="unknown profile 'nosuch'") as info:
        get_profile("nosuch")
    assert "wlcg-1.0" in str(info.value)
    assert "scitokens-2.0" in str(info.value)


@pytest.mark.parametrize("name", ["wlcg-1.0", "scitokens-2.0"])
def test_baseline_claims_has_required(name: str) -> None:
    profile = get_profile(name)
    claims = profile.baseline_claims(
        "https://issuer.test", "https://storage.test", "x:/", now=1000
    )
    missing = set(profile.required_claims) - set(claims)
    assert not missing


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


def test_issuer_settings() -> None:
    settings = get_profile("wlcg-1.0").issuer_settings()
    assert settings["claims"] == {"wlcg.ver": "1.0"}
    assert settings["max_lifetime"] == 21600
    assert settings["default_audience"] == "https://wlcg.cern.ch/jwt/v1/any"
    assert settings["alg"] == "RS256"


def test_copy_of_shipped_file_loads(tmp_path: Path) -> None:
    path = _write_edited_profile(tmp_path, 'title = "', 'title = "Copy of ')
    assert load_profile(path).title.startswith("Copy of ")


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
