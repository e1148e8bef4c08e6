"""Write the example model repository that ``make demo`` serves.

Usage: python examples/build_example_repository.py DEST

DEST/simple: Triton's "simple" add/sub model (two FP32 [-1, 16] inputs, two outputs).
DEST/cnn:    an MNIST-sized CNN (FP32 [-1, 1, 28, 28] -> [-1, 10]) with untrained weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

from shipyard.testing import add_sub_model, cnn_model, write_model

SIMPLE_CONFIG = """\
# Triton's "simple" model. Every field is documented in docs/model-config.md.
max_batch_size = 8

[dynamic_batching]
max_queue_delay_us = 0
"""


def main(dest: Path) -> None:
    """Write (or refresh) the example repository under ``dest``."""
    write_model(dest, "simple", add_sub_model(), config=SIMPLE_CONFIG)
    write_model(dest, "cnn", cnn_model())
    print(f"example repository ready in {dest}/ (models: simple, cnn)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/build_example_repository.py DEST")
    main(Path(sys.argv[1]))
