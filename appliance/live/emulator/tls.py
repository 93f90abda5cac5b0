"""TLS material for the emulator: the SDK only speaks `wss://`, so loopback needs a cert.

`trustme` makes a throwaway CA and a server certificate for 127.0.0.1 / localhost / ::1.
The CA is written as PEM to a directory so clients can trust it (`SSL_CERT_FILE=ca.pem`
for the SDK with no code change, or an `ssl.SSLContext(cafile=...)`). Imported lazily:
trustme pulls in `cryptography`, which is slow to import on a Pi.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """A server context for the emulator and the CA file a client must trust."""

    server_context: ssl.SSLContext
    ca_file: Path


def make_tls(directory: Path) -> TlsMaterial:
    """Create a CA and a 127.0.0.1 certificate; write the CA to `directory/ca.pem`."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return TlsMaterial(server_context=context, ca_file=ca_file)


def client_context(ca_file: Path | str) -> ssl.SSLContext:
    """An SSL context that trusts only the emulator's CA (for `async_client_args`)."""
    return ssl.create_default_context(cafile=str(ca_file))
