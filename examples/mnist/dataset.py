"""The example's data: 9,000 real MNIST digits (``data/mnist-9k.npz``), split deterministically.

The file's digits were already shuffled with a fixed seed (see ``data/PROVENANCE.md``), so the
split is positional: the first 7,500 digits are the training set, the last 1,500 the test set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

DATA = Path(__file__).resolve().parent / "data" / "mnist-9k.npz"
TEST_SIZE = 1500

Split = tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]


def load_split(path: Path = DATA) -> tuple[Split, Split]:
    """``((train_images, train_labels), (test_images, test_labels))``; images uint8 [N, 28, 28]."""
    with np.load(path) as data:
        images = np.asarray(data["images"], dtype=np.uint8)
        labels = np.asarray(data["labels"], dtype=np.int64)
    cut = len(images) - TEST_SIZE
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:])


def to_input(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The model's input for uint8 images ``[N, 28, 28]``: FP32 ``[N, 1, 28, 28]`` in [0, 1]."""
    return (images.astype(np.float32) / 255.0)[:, None, :, :]
