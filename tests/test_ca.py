"""Tests of testbed.ca: the per-run certificate authority and server certificates."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from testbed.ca import CertificateAuthority, write_private_file
from testbed.errors import ConfigurationError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leaf_and_chain(cert_path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(cert_path.read_bytes())


@pytest.fixture
def authority(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca")


def test_create_writes_ca_files(authority: CertificateAuthority) -> None:
    assert authority.cert_path.is_file()
    assert authority.key_path.is_file()


def test_ca_key_mode_is_0600(authority: CertificateAuthority) -> None:
    assert _mode(authority.key_path) == 0o600


def test_ca_certificate_is_a_ca(authority: CertificateAuthority) -> None:
    constraints = authority.certificate.extensions.get_extension_for_class(
        x509.BasicConstraints
    )
    assert constraints.value.ca is True


def test_ca_certificate_is_self_signed(authority: CertificateAuthority) -> None:
    certificate = authority.certificate
    assert certificate.issuer == certificate.subject
    certificate.verify_directly_issued_by(certificate)


def test_server_certificate_files(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    server = authority.issue_server_certificate(tmp_path / "tls")
    assert server.cert_path == tmp_path / "tls" / "cert.pem"
    assert server.key_path == tmp_path / "tls" / "key.pem"
    assert server.cert_path.is_file()
    assert server.key_path.is_file()


def test_server_key_mode_is_0600(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    server = authority.issue_server_certificate(tmp_path / "tls")
    assert _mode(server.key_path) == 0o600


def test_server_sans_contain_localhost(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    server = authority.issue_server_certificate(tmp_path / "tls")
    leaf = _leaf_and_chain(server.cert_path)[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(
        x509.IPAddress
    )


def test_server_sans_follow_arguments(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    server = authority.issue_server_certificate(
        tmp_path / "tls", hostnames=("storage.test", "alt.test"), addresses=("::1",)
    )
    leaf = _leaf_and_chain(server.cert_path)[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["storage.test", "alt.test"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("::1")]
    assert server.hostnames == ("storage.test", "alt.test")
    assert server.addresses == ("::1",)


def test_server_certificate_needs_hostname(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="at least one hostname"):
        authority.issue_server_certificate(tmp_path / "tls", hostnames=())


def test_chain_verifies_against_ca(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    server = authority.issue_server_certificate(tmp_path / "tls")
    leaf, *rest = _leaf_and_chain(server.cert_path)
    leaf.verify_directly_issued_by(authority.certificate)
    assert rest == [authority.certificate]


def test_server_key_matches_certificate(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    server = authority.issue_server_certificate(tmp_path / "tls")
    leaf = _leaf_and_chain(server.cert_path)[0]
    key = serialization.load_pem_private_key(
        server.key_path.read_bytes(), password=None
    )
    assert key.public_key() == leaf.public_key()


def test_load_round_trip(authority: CertificateAuthority, tmp_path: Path) -> None:
    loaded = CertificateAuthority.load(authority.directory)
    assert loaded.certificate == authority.certificate
    assert loaded.cert_path == authority.cert_path


def test_loaded_ca_signs_verifiable_certificates(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    loaded = CertificateAuthority.load(authority.directory)
    server = loaded.issue_server_certificate(tmp_path / "tls")
    leaf = _leaf_and_chain(server.cert_path)[0]
    leaf.verify_directly_issued_by(authority.certificate)


def test_load_missing_directory_raises(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca"
    with pytest.raises(ConfigurationError, match="cannot load the testbed CA") as info:
        CertificateAuthority.load(missing)
    assert str(missing) in str(info.value)


def test_load_rejects_non_ec_key(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    authority.key_path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigurationError, match="not an EC key"):
        CertificateAuthority.load(authority.directory)


def test_write_private_file_resets_mode(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_private_file(path, b"new")
    assert _mode(path) == 0o600
    assert path.read_bytes() == b"new"
