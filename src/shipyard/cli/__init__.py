"""The ``shipyard`` command: parse arguments, call the library, print the result.

One module per command (``serve``, ``repo``, ``convert``, ``hw``, ``optimize``, ``predict``,
``bench``, ``tune``, ``ray``, ``explain``, ``top``, ``keys``); what they share (the console,
one-line errors, REPO/NAME, the accuracy guard's options, the models table) is in
:mod:`~shipyard.cli.common`. Every command that takes a model version calls the flag
``--version``; ``shipyard --version`` (before any command) prints Shipyard's own.
"""

from __future__ import annotations

import click

from shipyard import __version__
from shipyard.cli.bench import bench_command
from shipyard.cli.convert import convert_command
from shipyard.cli.explain import explain_command
from shipyard.cli.hw import hw_command
from shipyard.cli.keys import keys
from shipyard.cli.optimize import optimize_command
from shipyard.cli.predict import predict_command
from shipyard.cli.ray import ray_group
from shipyard.cli.repo import repo
from shipyard.cli.serve import serve
from shipyard.cli.top import top_command
from shipyard.cli.tune import tune_command

__all__ = ["main"]


@click.group()
@click.version_option(__version__, prog_name="shipyard")
def main() -> None:
    """Shipyard: serve trained models over the Open Inference Protocol (KServe V2)."""


main.add_command(serve)
main.add_command(repo)
main.add_command(convert_command)
main.add_command(hw_command)
main.add_command(optimize_command)
main.add_command(predict_command)
main.add_command(bench_command)
main.add_command(tune_command)
main.add_command(ray_group)
main.add_command(explain_command)
main.add_command(top_command)
main.add_command(keys)
