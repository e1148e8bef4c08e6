"""``shipyard ray serve REPOSITORY``: serve a repository on a Ray cluster with Ray Serve."""

from __future__ import annotations

from pathlib import Path

import click

from shipyard import __version__
from shipyard.cli.common import console, fail
from shipyard.config import LOG_LEVELS
from shipyard.errors import ShipyardError
from shipyard.log import configure_logging

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
@click.option("--host", default="127.0.0.1", show_default=True, help="Ray Serve's HTTP address.")
@click.option("--http-port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--model", "models", multiple=True, help="Deploy only this model (repeatable).")
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where each node caches a store URL REPOSITORY.",
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
    host: str,
    http_port: int,
    models: tuple[str, ...],
    cache_dir: Path | None,
    detach: bool,
    log_level: str,
) -> None:
    """Deploy every model of REPOSITORY as a Ray Serve deployment and serve V2 over HTTP.

    REPOSITORY is a folder every node can read, or a store URL (s3://...). Each replica runs
    Shipyard's own service, backend and dynamic batcher; [scale] in model.toml sets replicas
    and autoscaling. Without --detach, Ctrl-C removes the deployments. Running it again rolls
    out changed models. gRPC is not served through Ray (see docs/ray.md).
    """
    from shipyard.cluster.deploy import ClusterSettings, deploy_repository, wait_then_remove

    configure_logging(log_level)
    settings = ClusterSettings(address, host, http_port, models, cache_dir)
    try:
        with console.status("deploying on Ray..."):
            names = deploy_repository(repository, settings)
    except ShipyardError as exc:
        fail(exc.message)
    except Exception as exc:  # Ray reports a replica that cannot start as a RuntimeError
        fail(f"deployment failed: {type(exc).__name__}: {exc}")
    url_host = f"[{host}]" if ":" in host else host
    console.print(f"Shipyard {__version__} on Ray serving {repository}")
    console.print(f"  HTTP  http://{url_host}:{http_port}   (Open Inference Protocol v2)")
    console.print(f"  models: {', '.join(names)}")
    if detach:
        return
    console.print("Press Ctrl-C to remove the deployments.")
    wait_then_remove(names)
