# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificates for the TLS distribution tests, made with ``cryptography`` (which
ansible-core depends on): a CA, certificates it signs for node names (DNS names and IP
addresses), and the broken kinds the tests need (another CA, expired, wrong name)."""

from __future__ import annotations

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: str, data: bytes) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _san(name: str):
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class CA:
    """A certificate authority in DIRECTORY (``<label>-ca.pem``)."""

    def __init__(self, directory: str, label: str = "cluster") -> None:
        self.directory = directory
        self.label = label
        self.key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "%s test CA" % label)])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.path = _write(os.path.join(directory, "%s-ca.pem" % label),
                           self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem: str, names, days: float = 30, valid_from_days: float = -1):
        """A certificate for NAMES (DNS names or IP addresses; the first one is the CN)
        valid from VALID_FROM_DAYS to DAYS from now; returns (certfile, keyfile)."""
        key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now + datetime.timedelta(days=valid_from_days))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        certfile = _write(os.path.join(self.directory, stem + ".pem"),
                          cert.public_bytes(serialization.Encoding.PEM))
        keyfile = _write(os.path.join(self.directory, stem + ".key"), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return certfile, keyfile


def ssl_dist_optfile(path: str, certfile: str, keyfile: str, cafile: str,
                     versions=("tlsv1.3", "tlsv1.2")) -> str:
    """An OTP ssl_dist options file: peers verified both ways (fail_if_no_peer_cert)."""
    common = ('{certfile, "%s"}, {keyfile, "%s"}, {cacertfile, "%s"}, {verify, verify_peer}, '
              "{versions, [%s]}" % (certfile, keyfile, cafile, ", ".join("'%s'" % v for v in versions)))
    text = "[{server, [%s, {fail_if_no_peer_cert, true}]},\n {client, [%s]}].\n" % (common, common)
    return _write(path, text.encode())


def tls_node_args(optfile: str, inet6: bool = False) -> list[str]:
    """The erl arguments of a node speaking TLS distribution with OPTFILE."""
    return ["-proto_dist", "inet6_tls" if inet6 else "inet_tls", "-ssl_dist_optfile", optfile]
