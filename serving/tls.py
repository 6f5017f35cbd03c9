"""TLS for both front ends from one set of PEM files: gRPC server credentials and the REST server's SSLContext.

The files come from TF Serving's ``--ssl_config_file`` (an SSLConfig text proto
holding the PEM text) or from impasto's plain ``--ssl_cert_file``,
``--ssl_key_file`` and ``--ssl_client_ca_file`` flags. Given a client CA, the
plain flags require every client to present a certificate it signed (mutual
TLS); SSLConfig says so with ``client_verify``.
"""

import dataclasses
import ssl
import tempfile
from pathlib import Path

import grpc

from impasto.export.tfserving_protos import parse_text_proto
from impasto.model.errors import InvalidInputError


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """PEM contents of the server's key and certificate and, for client certificates, the CA that signs them.

    Attributes:
        key: the server's private key.
        cert: the server's certificate chain.
        client_ca: certificates that client certificates must chain to; None when clients present none.
        require_client_cert: refuse clients without a valid certificate.
    """

    key: bytes
    cert: bytes
    client_ca: bytes | None = None
    require_client_cert: bool = False

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials for `grpc.Server.add_secure_port`."""
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.client_ca,
                                           require_client_auth=self.require_client_cert)

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context for the REST port, verifying clients as the gRPC port does.

        Raises:
            InvalidInputError: the key, certificate or CA does not load.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        with tempfile.TemporaryDirectory(prefix="impasto-tls-") as folder:  # load_cert_chain reads files only.
            cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
            cert.write_bytes(self.cert)
            key.touch(mode=0o600)
            key.write_bytes(self.key)
            try:
                context.load_cert_chain(cert, key)
                if self.client_ca:
                    context.load_verify_locations(cadata=self.client_ca.decode())
            except (ssl.SSLError, ValueError) as error:
                raise InvalidInputError(f"TLS key, certificate or client CA does not load: {error}") from None
        if self.client_ca:
            context.verify_mode = ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_OPTIONAL
        return context


def from_flags(ssl_config_file: str | None, cert_file: str | None, key_file: str | None,
               client_ca_file: str | None) -> TlsFiles | None:
    """The TLS settings the server flags describe; None for plaintext.

    Raises:
        InvalidInputError: both kinds of flags, a certificate without its key, or an unreadable file.
    """
    plain = (cert_file, key_file, client_ca_file)
    if ssl_config_file and any(plain):
        raise InvalidInputError("give --ssl_config_file or the --ssl_*_file flags, not both")
    if ssl_config_file:
        ssl_config = parse_text_proto(ssl_config_file, "SSLConfig")
        if not ssl_config.server_key or not ssl_config.server_cert:
            raise InvalidInputError(f"{ssl_config_file}: server_key and server_cert are required")
        return TlsFiles(ssl_config.server_key.encode(), ssl_config.server_cert.encode(),
                        ssl_config.custom_ca.encode() or None, ssl_config.client_verify)
    if not any(plain):
        return None
    if not (cert_file and key_file):
        raise InvalidInputError("--ssl_cert_file and --ssl_key_file go together (and --ssl_client_ca_file needs both)")
    client_ca = _read(client_ca_file, "--ssl_client_ca_file") if client_ca_file else None
    return TlsFiles(_read(key_file, "--ssl_key_file"), _read(cert_file, "--ssl_cert_file"), client_ca,
                    require_client_cert=client_ca is not None)


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InvalidInputError(f"{flag} {path}: cannot read ({error.strerror})") from None
