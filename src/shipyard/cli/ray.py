"""``shipyard ray serve REPOSITORY``: serve a repository on a Ray cluster with Ray Serve."""

from __future__ import annotations

from pathlib import Path

import click

from shipyard import __version__
from shipyard.cli.common import (
    API_KEYS_OPTION,
    TLS_CLIENT_CA_OPTION,
    TLS_KEY_OPTION,
    console,
    fail,
)
from shipyard.config import LOG_LEVELS
from shipyard.errors import ConfigError, ShipyardError
from shipyard.log import configure_logging
from shipyard.server.auth import AuthPolicy, load_keys

__all__ = ["ray_group"]


@click.group("ray")
def ray_group() -> None:
    """Run Shipyard on a Ray cluster (needs the [ray] extra)."""


@ray_group.command("serve")
@click.argument("repository")
@click.option(
    "--address",
    default="auto",
    show_default=True,
    help="The cluster: auto (this machine's), ray://HOST:10001 or HOST:GCS_PORT.",
)
@click.option(
    "--ingress",
    type=click.Choice(["shipyard", "ray"]),
    default="shipyard",
    show_default=True,
    help="shipyard: HAProxy on the head node straight to each replica's own Shipyard server "
    "(fastest); ray: Ray Serve's proxy or its HAProxy mode (docs/ray.md).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address of the cluster URL (on the head node) and of every replica's server.",
)
@click.option("--http-port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--model", "models", multiple=True, help="Deploy only this model (repeatable).")
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where each node caches a store URL REPOSITORY.",
)
# -- exposure (docs/ray.md, "Keys and TLS"): the flags of `shipyard serve` (mutual TLS only
# through the front door).
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="PEM certificate chain: the cluster URL serves HTTPS (with --tls-key; with --ingress "
    "ray only on Ray's proxy, not its HAProxy mode).",
)
@TLS_KEY_OPTION
@TLS_CLIENT_CA_OPTION
@API_KEYS_OPTION
@click.option(
    "--metrics-auth",
    is_flag=True,
    default=False,
    help="/metrics needs a key (role metrics or admin) [default: open].",
)
@click.option(
    "--detach", is_flag=True, help="Deploy and exit; the models keep serving on the cluster."
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default="warning",
    show_default=True,
    help="This command's logs.",
)
def ray_serve(
    repository: str,
    address: str,
    ingress: str,
    host: str,
    http_port: int,
    models: tuple[str, ...],
    cache_dir: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    api_keys: Path | None,
    metrics_auth: bool,
    detach: bool,
    log_level: str,
) -> None:
    """Deploy every model of REPOSITORY as a Ray Serve deployment and serve V2 over HTTP.

    REPOSITORY is a folder every node can read, or a store URL (s3://...). Each replica runs
    Shipyard's own service, backend and dynamic batcher; [scale] in model.toml sets replicas
    and autoscaling. Without --detach, Ctrl-C removes the deployments. Running it again rolls
    out changed models. gRPC is not served through Ray (see docs/ray.md). API keys are checked in
    every replica (docs/ray.md, "Keys and TLS").
    """
    from shipyard.cluster.deploy import ClusterSettings, deploy_repository, wait_then_remove

    configure_logging(log_level)
    try:  # the files are checked here, before anything reaches the cluster
        auth = _auth_policy(api_keys, metrics_auth)
        _check_tls(tls_cert, tls_key, tls_client_ca, ingress)
    except ShipyardError as exc:
        fail(exc.message)
    settings = ClusterSettings(
        address,
        host,
        http_port,
        models,
        cache_dir,
        auth=auth,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        ingress=ingress,
    )
    try:
        with console.status("deploying on Ray..."):
            names = deploy_repository(repository, settings)
    except ShipyardError as exc:
        fail(exc.message)
    except Exception as exc:  # Ray reports a replica that cannot start as a RuntimeError
        fail(f"deployment failed: {type(exc).__name__}: {exc}")
    url_host = f"[{host}]" if ":" in host else host
    scheme = "https" if settings.tls else "http"
    console.print(f"Shipyard {__version__} on Ray serving {repository}")
    console.print(f"  HTTP  {scheme}://{url_host}:{http_port}   (Open Inference Protocol v2)")
    console.print(f"  models: {', '.join(names)}")
    if auth is None:
        console.print("  Access: no API keys: every call is open (--api-keys FILE to require keys)")
    else:
        console.print(f"  Access: {auth.describe()}")
    if detach:
        return
    console.print("Press Ctrl-C to remove the deployments.")
    wait_then_remove(names)


def _auth_policy(api_keys: Path | None, metrics_auth: bool) -> AuthPolicy | None:
    """The key policy of ``--api-keys`` (its file read now), or None without a key file."""
    if api_keys is None:
        if metrics_auth:
            raise ConfigError("--metrics-auth needs API keys to check: give --api-keys FILE")
        return None
    return AuthPolicy(load_keys(api_keys), metrics_auth)


def _check_tls(cert: Path | None, key: Path | None, client_ca: Path | None, ingress: str) -> None:
    """Refuse a certificate without its key (or the reverse), a client CA without TLS or with
    Ray's ingress, and files that do not load."""
    from shipyard.server.tls import server_context

    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key go together: give both")
    if client_ca is not None and cert is None:
        raise ConfigError(
            "--tls-client-ca (mutual TLS) needs TLS itself: give --tls-cert and --tls-key"
        )
    if client_ca is not None and ingress != "shipyard":
        raise ConfigError(
            "--tls-client-ca needs --ingress shipyard: Ray's proxy would take the CA without "
            'requiring client certificates (docs/ray.md, "Keys and TLS")'
        )
    if cert is not None and key is not None:
        server_context(cert, key, client_ca, ["http/1.1"])  # ConfigError naming the file
