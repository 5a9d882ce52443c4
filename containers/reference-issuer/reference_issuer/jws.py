"""Signing keys, their public JWKs and JWS compact serialization (RFC 7515)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import Algorithm, ECAlgorithm, RSAAlgorithm

# Key type and, for EC keys, curve that each supported JWS algorithm requires.
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
SUPPORTED_ALGORITHMS = RSA_ALGORITHMS + tuple(EC_CURVES)


@dataclass(frozen=True)
class SigningKey:
    """A private signing key and the JWS algorithm it signs with."""

    kid: str
    alg: str
    published: bool
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    algorithm: Algorithm

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` with this key's own algorithm (raw r||s for ECDSA)."""
        return self.algorithm.sign(message, self.private_key)

    def public_jwk(self) -> dict[str, Any]:
        """Build the RFC 7517 JWK of the public key, with kid, alg and use."""
        public_key = self.private_key.public_key()
        if isinstance(public_key, rsa.RSAPublicKey):
            parameters = RSAAlgorithm.to_jwk(public_key, as_dict=True)
        else:
            parameters = ECAlgorithm.to_jwk(public_key, as_dict=True)
        # RFC 7517 section 4.3: "use" and "key_ops" should not appear together.
        parameters.pop("key_ops", None)
        return {"kid": self.kid, "alg": self.alg, "use": "sig", **parameters}


def base64url(data: bytes) -> str:
    """Encode ``data`` as unpadded base64url (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_segment(value: dict[str, Any]) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return base64url(text.encode("utf-8"))


def encode_jws(
    header: dict[str, Any],
    claims: dict[str, Any],
    key: SigningKey,
    signature_mode: str = "valid",
) -> str:
    """Encode a JWS compact serialization of exactly ``header`` and ``claims``.

    The header is used verbatim, so its alg and kid may disagree with ``key``. The
    signature always comes from ``key`` and the key's own algorithm. "corrupt" inverts
    the first and last bytes of that signature, and "none" leaves it empty.
    """
    signing_input = f"{_json_segment(header)}.{_json_segment(claims)}"
    if signature_mode == "none":
        return signing_input + "."
    signature = bytearray(key.sign(signing_input.encode("ascii")))
    if signature_mode == "corrupt":
        signature[0] ^= 0xFF
        signature[-1] ^= 0xFF
    elif signature_mode != "valid":
        raise ValueError(f"unknown signature mode {signature_mode!r}")
    return f"{signing_input}.{base64url(bytes(signature))}"
