"""Mutual TLS inside the mesh: a dev CA made on first start (like the signing key), one
certificate per service and one for Envoy, gRPC credentials from them, and who the peer is.

Identities are SPIFFE-style URI SANs, `spiffe://makoto/<name>`; each certificate also names
`<name>.makoto.internal`, which clients pin with ssl_target_name_override so that a channel to
StorageService only accepts StorageService's certificate (not any certificate of the CA).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.config import MeshSettings

SERVICES = ("tenant", "storage", "llm", "metering")
ENVOY = "envoy"
# Operators' tools that talk to a service port directly (e.g. the invoice export): Envoy's rights.
OPERATOR = "operator"
IDENTITIES = (*SERVICES, ENVOY, OPERATOR)
SPIFFE_PREFIX = "spiffe://makoto/"
DNS_SUFFIX = ".makoto.internal"
# Dev certificates live long enough for a developer's machine; production mounts its own.
VALIDITY_DAYS = 825


def spiffe_id(name: str) -> str:
    return f"{SPIFFE_PREFIX}{name}"


def dns_name(name: str) -> str:
    return f"{name}{DNS_SUFFIX}"


@dataclass(frozen=True)
class CertFiles:
    ca: Path
    cert: Path
    key: Path


def cert_files(directory: Path, name: str) -> CertFiles:
    return CertFiles(ca=directory / "ca.pem", cert=directory / f"{name}.pem", key=directory / f"{name}.key")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MAKOTO dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(common_name: str = "MAKOTO dev CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
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
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    name: str,
    *,
    uris: Sequence[str] | None = None,
    dns: Sequence[str] | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A leaf for `name`, usable as server and client certificate (services are both)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [
        *(x509.UniformResourceIdentifier(u) for u in (uris if uris is not None else [spiffe_id(name)])),
        *(x509.DNSName(d) for d in (dns if dns is not None else [dns_name(name), name, "localhost"])),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_pair(directory: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    _write_private(directory / f"{name}.key", _key_pem(key))
    _write_private(directory / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))


def _complete(directory: Path) -> bool:
    return (directory / "ca.pem").exists() and all(
        (directory / f"{n}.pem").exists() and (directory / f"{n}.key").exists() for n in IDENTITIES
    )


def ensure_certs(settings: MeshSettings) -> Path:
    """Create the dev CA and every identity's certificate once (0600 files in a 0700 directory);
    later calls reuse them. Built in a private directory and renamed into place, so processes
    starting together never see half a set."""
    directory = settings.tls_path
    if _complete(directory):
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tls-", dir=directory.parent))  # 0700
    ca_key, ca_cert = make_ca()
    _write_private(staging / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(staging / "ca.key", _key_pem(ca_key))
    for name in IDENTITIES:
        write_pair(staging, name, *issue(ca_key, ca_cert, name))
    try:
        os.rename(staging, directory)
    except OSError:  # another process won (or an incomplete directory is in the way)
        shutil.rmtree(staging, ignore_errors=True)
        if not _complete(directory):
            raise
    return directory


def certs_dir(settings: MeshSettings) -> Path:
    """Where this process reads its certificate: an explicit MAKOTO_TLS_DIR is used as it is
    (Kubernetes mounts each service's own Secret there: CA, its certificate and key only);
    the default <home>/tls is made on first use."""
    return settings.tls_dir if settings.tls_dir is not None else ensure_certs(settings)


def _read(files: CertFiles) -> tuple[bytes, bytes, bytes]:
    if not files.cert.exists():
        raise FileNotFoundError(f"no mTLS certificate {files.cert} (identities: {', '.join(IDENTITIES)})")
    return files.ca.read_bytes(), files.cert.read_bytes(), files.key.read_bytes()


def server_credentials(settings: MeshSettings, name: str) -> grpc.ServerCredentials:
    """This service's certificate; clients must present one from the mesh CA."""
    ca, cert, key = _read(cert_files(certs_dir(settings), name))
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(settings: MeshSettings, identity: str) -> grpc.ChannelCredentials:
    ca, cert, key = _read(cert_files(certs_dir(settings), identity))
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def open_channel(
    settings: MeshSettings,
    target_service: str,
    *,
    identity: str,
    address: str | None = None,
    options: Sequence[tuple[str, object]] = (),
    interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
) -> grpc.aio.Channel:
    """A channel to one service (its address from the settings unless given) presenting
    `identity`'s certificate and accepting only `target_service`'s; plaintext when TLS is off."""
    target = address or settings.address(target_service)
    if not settings.tls:
        return grpc.aio.insecure_channel(target, options=list(options), interceptors=interceptors)
    return grpc.aio.secure_channel(
        target,
        channel_credentials(settings, identity),
        options=[*options, ("grpc.ssl_target_name_override", dns_name(target_service))],
        interceptors=interceptors,
    )


def peer_identity(context: grpc.aio.ServicerContext) -> str | None:
    """The mesh identity (`tenant`, `envoy`, ...) in the verified client certificate's URI SAN,
    or None (no certificate, or not one of ours)."""
    auth = context.auth_context()
    for raw in auth.get("x509_subject_alternative_name", []):
        value = raw.decode() if isinstance(raw, bytes) else str(raw)
        if value.startswith(SPIFFE_PREFIX):
            return value[len(SPIFFE_PREFIX) :]
    return None


def server_ssl_context(settings: MeshSettings, name: str) -> ssl.SSLContext:
    """For an HTTP listener (LLMService's OpenAI-compatible API): this service's certificate,
    client certificates from the mesh CA required."""
    files = cert_files(certs_dir(settings), name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.ca))
    context.load_cert_chain(str(files.cert), str(files.key))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_ssl_context(settings: MeshSettings, identity: str) -> ssl.SSLContext:
    """For an HTTP client inside the mesh (tests, tools): trust the mesh CA, present `identity`."""
    files = cert_files(certs_dir(settings), identity)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
    context.load_cert_chain(str(files.cert), str(files.key))
    return context
