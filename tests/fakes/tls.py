"""Certificates made at test time so fake cloud APIs can be served over real HTTPS on 127.0.0.1.

The Azure SDK's bearer-token policy refuses plain ``http://``, so the fake ARM server speaks TLS. We mint a
throwaway certificate authority and a server certificate it signs (SAN ``127.0.0.1`` and ``localhost``).
The CA certificate is what a client passes as its CA bundle (``connection_verify=``). A separate CA and leaf
(rather than one self-signed leaf) keeps OpenSSL's strict X.509 checks (``VERIFY_X509_STRICT``) happy.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TestCertificate", "make_test_certificate"]


@dataclass(frozen=True)
class TestCertificate:
    """Paths of a freshly minted certificate set (all PEM files in one directory)."""

    __test__ = False  # not a pytest test class despite the name

    directory: Path
    ca_bundle: Path  # the CA certificate: give this to clients as their trust store
    cert_file: Path  # the server certificate chain (leaf + CA)
    key_file: Path  # the server's private key (unencrypted, test only)

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for a server presenting this certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


def make_test_certificate(
    directory: str | Path | None = None, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> TestCertificate:
    """Create a CA and a server certificate for ``hosts`` and write them as PEM files.

    ``directory`` defaults to a new temporary directory (the caller removes it, e.g. pytest's ``tmp_path``).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="codecapsule-tls-"))
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CodeCapsule test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
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
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    ca_bundle = out / "ca.pem"
    cert_file = out / "server.pem"
    key_file = out / "server.key"
    ca_bundle.write_bytes(ca_cert.public_bytes(pem))
    cert_file.write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    return TestCertificate(directory=out, ca_bundle=ca_bundle, cert_file=cert_file, key_file=key_file)
