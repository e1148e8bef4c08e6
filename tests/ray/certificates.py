"""TLS certificates for the Ray tests: 127.0.0.1's, from a trustme CA made for the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Certificates:
    """PEM files: the CA a client trusts, and the server's certificate chain and key."""

    ca: Path
    cert: Path
    key: Path


def write_certificates(folder: Path) -> Certificates:
    """Write a new CA and a certificate for 127.0.0.1 that it signed into ``folder``."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    ca.cert_pem.write_to_path(paths.ca)
    server.cert_chain_pems[0].write_to_path(paths.cert)
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(paths.cert, append=True)
    server.private_key_pem.write_to_path(paths.key)
    return paths
