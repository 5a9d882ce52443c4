"""The testbed's certificate authority, made anew for every run.

Each service gets a server certificate for ``localhost`` and ``127.0.0.1`` signed by
this CA. Every container installs the CA certificate into its system trust store and
the host-side clients pass it as their ``verify`` bundle, the way grid sites trust the
IGTF bundle.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testbed.errors import ConfigurationError

__all__ = ["CertificateAuthority", "ServerCertificate", "write_private_file"]

logger = logging.getLogger(__name__)

CA_LIFETIME = datetime.timedelta(days=7)
SERVER_LIFETIME = datetime.timedelta(days=2)
# Certificates start a little in the past so that a container whose clock lags the
# host's by a few seconds still accepts them.
BACKDATE = datetime.timedelta(minutes=5)


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that only the owner can read it (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class ServerCertificate:
    """A server certificate and its key, as PEM files."""

    cert_path: Path
    key_path: Path
    hostnames: tuple[str, ...]
    addresses: tuple[str, ...]


class CertificateAuthority:
    """A self-signed CA whose certificate and key live in one directory."""

    def __init__(
        self,
        certificate: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        directory: Path,
    ) -> None:
        self.certificate = certificate
        self._key = key
        self.directory = directory

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def key_path(self) -> Path:
        return self.directory / "ca.key"

    @classmethod
    def create(
        cls, directory: Path, common_name: str = "Token interop testbed CA"
    ) -> CertificateAuthority:
        """Generate a CA key and certificate and write them into ``directory``."""
        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Token interop testbed"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        authority = cls(certificate, key, directory)
        directory.mkdir(parents=True, exist_ok=True)
        authority.cert_path.write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM)
        )
        write_private_file(authority.key_path, _key_pem(key))
        logger.info("created certificate authority in %s", directory)
        return authority

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """Load a CA that :meth:`create` wrote into ``directory``."""
        cert_path, key_path = directory / "ca.pem", directory / "ca.key"
        try:
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(
                key_path.read_bytes(), password=None
            )
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot load the testbed CA from {directory}: {exc}; "
                "run 'testbed down' and start the stack again"
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigurationError(f"the CA key in {key_path} is not an EC key")
        return cls(certificate, key, directory)

    def issue_server_certificate(
        self,
        directory: Path,
        hostnames: tuple[str, ...] = ("localhost",),
        addresses: tuple[str, ...] = ("127.0.0.1",),
    ) -> ServerCertificate:
        """Issue a TLS server certificate and write ``cert.pem`` and ``key.pem``.

        The certificate file contains the leaf followed by the CA certificate, so
        servers that send their whole chain find it there.
        """
        if not hostnames:
            raise ConfigurationError("a server certificate needs at least one hostname")
        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = [x509.DNSName(host) for host in hostnames]
        names += [
            x509.IPAddress(ipaddress.ip_address(address)) for address in addresses
        ]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
            )
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + SERVER_LIFETIME)
            .add_extension(
                x509.BasicConstraints(ca=False, path_length=None), critical=True
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self._key.public_key()
                ),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "cert.pem", directory / "key.pem"
        chain = certificate.public_bytes(serialization.Encoding.PEM)
        chain += self.certificate.public_bytes(serialization.Encoding.PEM)
        cert_path.write_bytes(chain)
        write_private_file(key_path, _key_pem(key))
        return ServerCertificate(
            cert_path, key_path, tuple(hostnames), tuple(addresses)
        )
