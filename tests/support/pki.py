"""A throwaway PKI for tests: a CA and SPIFFE-identified leaf certificates (trustme cannot
put URI SANs in certificates, so these are built with `cryptography`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path
    not_after: dt.datetime


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


class CA:
    """A self-signed CA that issues leaf certificates into `folder`."""

    def __init__(self, folder: Path, name: str = "meshobs-test-ca", days: int = 365):
        self.folder = folder
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.not_after = NOW + dt.timedelta(days=days)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(hours=1))
            .not_valid_after(self.not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = folder / f"{name}.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, spiffe_id: str | None = None, dns: tuple[str, ...] = (), lifetime: dt.timedelta = dt.timedelta(days=30),
              valid_from: dt.datetime | None = None) -> Issued:
        """A leaf certificate for `name` with optional SPIFFE URI SAN and DNS SANs; valid from an
        hour ago until `lifetime` from now, or, with `valid_from`, for `lifetime` from then."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        if spiffe_id:
            sans.append(x509.UniformResourceIdentifier(spiffe_id))
        not_before = NOW - dt.timedelta(hours=1) if valid_from is None else valid_from
        not_after = NOW + lifetime if valid_from is None else valid_from + lifetime
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path = self.folder / f"{name}.pem"
        key_path = self.folder / f"{name}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return Issued(cert_path, key_path, not_after)
