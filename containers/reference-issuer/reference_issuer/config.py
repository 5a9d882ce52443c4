"""Loading and validation of the issuer.json configuration.

Relative paths in the configuration are resolved against the folder of the
configuration file. load_config raises ConfigError, whose message starts with the
path of the offending field, or names the file if it cannot be read or parsed.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import get_default_algorithms

from .jws import EC_CURVES, RSA_ALGORITHMS, SUPPORTED_ALGORITHMS, SigningKey

# Claims that the token endpoint sets itself, so a profile must not fix them.
ISSUER_CLAIMS = ("iss", "sub", "aud", "iat", "nbf", "exp", "jti", "scope", "client_id")
ISSUER_HEADER_FIELDS = ("alg", "kid")

# Storage scope names that discovery lists for a profile without a "scopes" field.
# WLCG Common JWT Profiles (section 2.2.1 in version 1.1) defines the storage.*
# scopes, and the SciTokens Claims and Scopes Language defines read and write.
WLCG_STORAGE_SCOPES = (
    "storage.read",
    "storage.create",
    "storage.modify",
    "storage.stage",
)
SCITOKENS_STORAGE_SCOPES = ("read", "write")

# RFC 6749 appendix A.4: scope = scope-token *( SP scope-token ).
SCOPE_PATTERN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*")
SHA256_HEX_PATTERN = re.compile(r"[0-9a-fA-F]{64}")

DEFAULT_JWKS_MAX_AGE = 300


class ConfigError(Exception):
    """An invalid configuration. The message starts with the field's path."""


@dataclass(frozen=True)
class Client:
    """An OAuth client that may use the client-credentials grant."""

    client_id: str
    secret_sha256: bytes
    profile: str
    subject: str


@dataclass(frozen=True)
class Profile:
    """A token profile: fixed header fields and claims, lifetimes and signing key."""

    name: str
    header: dict[str, Any]
    claims: dict[str, Any]
    lifetime: int
    max_lifetime: int
    default_audience: str | list[str]
    key: SigningKey
    scopes: tuple[str, ...]
    # Whether tokens from the token endpoint carry client_id (RFC 9068 section
    # 2.2); profiles whose claims are all critical, like SciTokens 1.0, turn it off.
    client_id_claim: bool = True


@dataclass(frozen=True)
class Config:
    """The validated issuer configuration with keys and secrets loaded."""

    issuer: str
    host: str
    port: int
    tls_cert: Path
    tls_key: Path
    keys: tuple[SigningKey, ...]
    mint_credential: str
    clients: dict[str, Client]
    profiles: dict[str, Profile]
    jwks_max_age: int

    def key_by_kid(self, kid: str) -> SigningKey | None:
        for key in self.keys:
            if key.kid == kid:
                return key
        return None


def _type_name(expected: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        bool: "true or false",
        dict: "an object",
        list: "an array",
    }
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(names.get(kind, kind.__name__) for kind in kinds)


def _field_path(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _get(
    obj: dict[str, Any],
    name: str,
    expected: type | tuple[type, ...],
    where: str,
    *,
    required: bool = True,
    default: Any = None,
) -> Any:
    """Return ``obj[name]`` after checking its JSON type, or ``default`` if optional.

    Booleans are rejected where an integer is expected, although Python treats them
    as integers.
    """
    path = _field_path(where, name)
    if name not in obj:
        if required:
            raise ConfigError(f"{path}: missing")
        return default
    value = obj[name]
    is_bool_as_int = isinstance(value, bool) and expected is int
    if is_bool_as_int or not isinstance(value, expected):
        raise ConfigError(
            f"{path}: expected {_type_name(expected)}, got {json.dumps(value)[:80]}"
        )
    return value


def _reject_unknown_fields(
    obj: dict[str, Any], allowed: tuple[str, ...], where: str
) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{_field_path(where, unknown[0])}: unknown field; "
            f"allowed fields are {', '.join(allowed)}"
        )


def _non_empty_string(obj: dict[str, Any], name: str, where: str) -> str:
    value: str = _get(obj, name, str, where)
    if not value.strip():
        raise ConfigError(f"{_field_path(where, name)}: must not be empty")
    return value


def _resolve(base: Path, value: str) -> Path:
    return (base / value).resolve()


def _validate_issuer_url(issuer: str) -> None:
    parts = urlsplit(issuer)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(f"issuer: must be an https URL with a host, got {issuer!r}")
    if parts.query or parts.fragment or '"' in issuer:
        raise ConfigError(
            f"issuer: must not contain a query, fragment or quote, got {issuer!r}"
        )


def _load_listen(raw: dict[str, Any]) -> tuple[str, int]:
    listen = _get(raw, "listen", dict, "")
    _reject_unknown_fields(listen, ("host", "port"), "listen")
    host: str = _get(listen, "host", str, "listen")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"listen.host: must be an IP address, got {host!r}") from None
    # The testbed runs containers with host networking, so listening anywhere but
    # loopback would expose the issuer to the network.
    if not address.is_loopback:
        raise ConfigError(f"listen.host: must be a loopback address, got {host!r}")
    port: int = _get(listen, "port", int, "listen")
    if not 1 <= port <= 65535:
        raise ConfigError(f"listen.port: must be between 1 and 65535, got {port}")
    return host, port


def _load_tls(raw: dict[str, Any], base: Path) -> tuple[Path, Path]:
    tls = _get(raw, "tls", dict, "")
    _reject_unknown_fields(tls, ("cert", "key"), "tls")
    paths = []
    for name in ("cert", "key"):
        path = _resolve(base, _non_empty_string(tls, name, "tls"))
        if not path.is_file():
            raise ConfigError(f"tls.{name}: file not found: {path}")
        paths.append(path)
    return paths[0], paths[1]


def _load_private_key(
    path: Path, alg: str, where: str
) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}.file: cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            f"{where}.file: {path} is not an unencrypted PEM private key: {exc}"
        ) from None
    if alg in RSA_ALGORITHMS:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(
                f"{where}.file: {alg} needs an RSA key, {path} is not one"
            )
        return key
    curve = EC_CURVES[alg]
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
        key.curve, curve
    ):
        raise ConfigError(
            f"{where}.file: {alg} needs an EC key on curve {curve.name}, "
            f"{path} is not one"
        )
    return key


def _load_signing_keys(raw: dict[str, Any], base: Path) -> tuple[SigningKey, ...]:
    entries = _get(raw, "signing_keys", list, "")
    if not entries:
        raise ConfigError("signing_keys: must contain at least one key")
    algorithms = get_default_algorithms()
    keys: list[SigningKey] = []
    for index, entry in enumerate(entries):
        where = f"signing_keys[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object")
        _reject_unknown_fields(entry, ("kid", "alg", "file", "published"), where)
        kid = _non_empty_string(entry, "kid", where)
        if any(key.kid == kid for key in keys):
            raise ConfigError(f"{where}.kid: duplicate kid {kid!r}")
        alg: str = _get(entry, "alg", str, where)
        if alg not in SUPPORTED_ALGORITHMS:
            raise ConfigError(
                f"{where}.alg: unsupported algorithm {alg!r}; "
                f"supported are {', '.join(SUPPORTED_ALGORITHMS)}"
            )
        path = _resolve(base, _non_empty_string(entry, "file", where))
        published: bool = _get(
            entry, "published", bool, where, required=False, default=True
        )
        private_key = _load_private_key(path, alg, where)
        keys.append(SigningKey(kid, alg, published, private_key, algorithms[alg]))
    return tuple(keys)


def _load_mint_credential(raw: dict[str, Any], base: Path) -> str:
    path = _resolve(base, _non_empty_string(raw, "mint_credential_file", ""))
    try:
        credential = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"mint_credential_file: cannot read {path}: {exc}") from None
    if not credential:
        raise ConfigError(f"mint_credential_file: {path} is empty")
    return credential


def _default_scopes(claims: dict[str, Any]) -> tuple[str, ...]:
    if "wlcg.ver" in claims:
        return WLCG_STORAGE_SCOPES
    version = claims.get("ver")
    if isinstance(version, str) and version.startswith("scitokens:"):
        return SCITOKENS_STORAGE_SCOPES
    return ()


def _load_profile(name: str, entry: Any, keys: tuple[SigningKey, ...]) -> Profile:
    where = f"profiles.{name}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object")
    allowed = (
        "header",
        "claims",
        "lifetime",
        "max_lifetime",
        "default_audience",
        "alg",
        "kid",
        "scopes",
        "client_id_claim",
    )
    _reject_unknown_fields(entry, allowed, where)

    header: dict[str, Any] = _get(
        entry, "header", dict, where, required=False, default={}
    )
    for reserved in ISSUER_HEADER_FIELDS:
        if reserved in header:
            raise ConfigError(
                f"{where}.header.{reserved}: set by the issuer from the signing key"
            )
    claims: dict[str, Any] = _get(
        entry, "claims", dict, where, required=False, default={}
    )
    for reserved in ISSUER_CLAIMS:
        if reserved in claims:
            raise ConfigError(f"{where}.claims.{reserved}: set by the token endpoint")

    lifetime: int = _get(entry, "lifetime", int, where)
    max_lifetime: int = _get(entry, "max_lifetime", int, where)
    if lifetime < 1:
        raise ConfigError(
            f"{where}.lifetime: must be at least 1 second, got {lifetime}"
        )
    if max_lifetime < lifetime:
        raise ConfigError(
            f"{where}.max_lifetime: must be at least lifetime ({lifetime}), "
            f"got {max_lifetime}"
        )

    audience = _get(entry, "default_audience", (str, list), where)
    audience_items = audience if isinstance(audience, list) else [audience]
    if not audience_items or not all(
        isinstance(item, str) and item for item in audience_items
    ):
        raise ConfigError(
            f"{where}.default_audience: must be a non-empty string "
            "or a non-empty array of non-empty strings"
        )

    alg: str = _get(entry, "alg", str, where)
    kid: str | None = _get(entry, "kid", str, where, required=False)
    candidates = [key for key in keys if key.published and key.alg == alg]
    if kid is not None:
        candidates = [key for key in candidates if key.kid == kid]
        if not candidates:
            raise ConfigError(
                f"{where}.kid: no published signing key with kid {kid!r} and alg {alg}"
            )
    if not candidates:
        raise ConfigError(f"{where}.alg: no published signing key with alg {alg!r}")

    scopes = _get(entry, "scopes", list, where, required=False)
    if scopes is None:
        scope_names = _default_scopes(claims)
    elif all(
        isinstance(scope, str) and SCOPE_PATTERN.fullmatch(scope) for scope in scopes
    ):
        scope_names = tuple(scopes)
    else:
        raise ConfigError(f"{where}.scopes: must be an array of scope names")

    client_id_claim = _get(
        entry, "client_id_claim", bool, where, required=False, default=True
    )
    return Profile(
        name=name,
        header=header,
        claims=claims,
        lifetime=lifetime,
        max_lifetime=max_lifetime,
        default_audience=audience,
        key=candidates[0],
        scopes=scope_names,
        client_id_claim=client_id_claim,
    )


def _load_clients(
    raw: dict[str, Any], profiles: dict[str, Profile]
) -> dict[str, Client]:
    entries = _get(raw, "clients", list, "")
    clients: dict[str, Client] = {}
    for index, entry in enumerate(entries):
        where = f"clients[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object")
        allowed = ("client_id", "client_secret_sha256", "profile", "subject")
        _reject_unknown_fields(entry, allowed, where)
        client_id = _non_empty_string(entry, "client_id", where)
        if client_id in clients:
            raise ConfigError(f"{where}.client_id: duplicate client_id {client_id!r}")
        digest_hex: str = _get(entry, "client_secret_sha256", str, where)
        if not SHA256_HEX_PATTERN.fullmatch(digest_hex):
            raise ConfigError(
                f"{where}.client_secret_sha256: must be 64 hexadecimal digits"
            )
        profile: str = _get(entry, "profile", str, where)
        if profile not in profiles:
            raise ConfigError(
                f"{where}.profile: unknown profile {profile!r}; "
                f"defined are {', '.join(profiles)}"
            )
        subject = _non_empty_string(entry, "subject", where)
        clients[client_id] = Client(
            client_id, bytes.fromhex(digest_hex), profile, subject
        )
    return clients


def load_config(path: Path) -> Config:
    """Read, validate and load the configuration file, keys and mint credential.

    Raises ConfigError with the path of the offending field.
    """

    def reject_constant(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    try:
        raw = json.loads(
            path.read_text(encoding="utf-8"), parse_constant=reject_constant
        )
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"configuration {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration {path}: expected a JSON object")
    allowed = (
        "issuer",
        "listen",
        "tls",
        "signing_keys",
        "mint_credential_file",
        "clients",
        "profiles",
        "jwks_max_age",
    )
    _reject_unknown_fields(raw, allowed, "")
    base = path.resolve().parent

    issuer: str = _get(raw, "issuer", str, "")
    _validate_issuer_url(issuer)
    host, port = _load_listen(raw)
    tls_cert, tls_key = _load_tls(raw, base)
    keys = _load_signing_keys(raw, base)
    mint_credential = _load_mint_credential(raw, base)

    raw_profiles = _get(raw, "profiles", dict, "")
    if not raw_profiles:
        raise ConfigError("profiles: must define at least one profile")
    profiles = {
        name: _load_profile(name, entry, keys) for name, entry in raw_profiles.items()
    }
    clients = _load_clients(raw, profiles)

    jwks_max_age: int = _get(
        raw, "jwks_max_age", int, "", required=False, default=DEFAULT_JWKS_MAX_AGE
    )
    if jwks_max_age < 0:
        raise ConfigError(f"jwks_max_age: must not be negative, got {jwks_max_age}")

    return Config(
        issuer=issuer,
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        keys=keys,
        mint_credential=mint_credential,
        clients=clients,
        profiles=profiles,
        jwks_max_age=jwks_max_age,
    )
