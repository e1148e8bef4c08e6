"""``shipyard hw``: this machine as the optimizer sees it."""

from __future__ import annotations

import click

from shipyard.cli.common import console

__all__ = ["hw_command"]


@click.command("hw")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def hw_command(as_json: bool) -> None:
    """Report this machine as the optimizer sees it: CPU, memory, GPUs, providers, precisions."""
    import json

    from shipyard.hardware import probe
    from shipyard.optimize.report import print_hardware

    report = probe()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_hardware(console, report)
