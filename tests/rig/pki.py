"""A certificate authority made in the test, for NATS TLS with client verification.

``write_pki(directory)`` writes a CA, a server certificate for 127.0.0.1 and
localhost and a client certificate, both signed by the CA, and returns their
paths. Start nats-server with ``Pki.nats_server_args()`` to make it require a
client certificate signed by that CA.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files ``write_pki`` wrote."""

    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str

    def nats_server_args(self) -> tuple[str, ...]:
        """nats-server flags: TLS with this server certificate, client certificates required."""
        return ("--tls", "--tlscert", self.server_cert, "--tlskey", self.server_key,
                "--tlsverify", "--tlscacert", self.ca_cert)


def write_pki(directory: Path, ca_name: str = "Test CA") -> Pki:
    """A fresh CA with a server and a client certificate, written to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = _name(ca_name)
    ca = (
        _builder(ca_subject, ca_subject, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    server_cert, server_key = _leaf(
        directory, "server", ca, ca_key, ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_cert, client_key = _leaf(
        directory, "client", ca, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("resgate")],
    )
    return Pki(str(ca_path), server_cert, server_key, client_cert, client_key)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _leaf(directory: Path, name: str, ca: x509.Certificate, ca_key, usage, alt_names) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name(name), ca.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)
