"""What the Ray tests share: TLS certificates for 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.ray.certificates import Certificates, write_certificates


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A certificate for 127.0.0.1 signed by a CA made for this run."""
    return write_certificates(tmp_path_factory.mktemp("certs"))
