"""TLS for both transports: one certificate, one server context per transport (by ALPN).

HTTP offers ``http/1.1`` and gRPC ``h2`` (gRPC clients require ALPN ``h2``). With a client CA,
the contexts require a client certificate that it signed (mutual TLS); a client without one
fails the handshake. TLS 1.2 is the oldest version offered.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

from shipyard.config import ServerConfig
from shipyard.errors import ConfigError

__all__ = ["server_context", "transport_contexts"]


def server_context(
    cert: Path, key: Path, client_ca: Path | None, alpn: Sequence[str]
) -> ssl.SSLContext:
    """A server context with ``cert``/``key``, offering ``alpn``; ``client_ca``: mutual TLS.

    Raise ConfigError naming the file when a certificate, key or CA cannot be loaded.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate {cert} with the key {key}: {_reason(exc)}"
        ) from exc
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the client CA {client_ca} (tls_client_ca): {_reason(exc)}"
            ) from exc
        context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(list(alpn))
    return context


def transport_contexts(config: ServerConfig) -> tuple[ssl.SSLContext, ssl.SSLContext] | None:
    """The HTTP and gRPC contexts of ``config``, or None when TLS is off."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    cert, key, ca = config.tls_cert, config.tls_key, config.tls_client_ca
    return server_context(cert, key, ca, ["http/1.1"]), server_context(cert, key, ca, ["h2"])


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)
