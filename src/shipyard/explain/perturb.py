"""The perturbations an explanation runs, and how their scores become attributions.

Pure NumPy, no model: each method makes perturbed copies of one instance in chunks (so a
large explanation never holds every copy at once) and folds the scores the model gives them
back into an attribution per pixel, word or feature.

- **Occlusion** (Zeiler & Fergus): a ``patch`` x ``patch`` square slides over the image by
  ``stride``; inside it the pixels take the ``baseline`` value. A pixel's attribution is the
  mean drop of the target score over the windows that cover it (Captum's ``Occlusion``).
- **RISE** (Petsiuk et al., 2018): random masks, each a coarse grid of cells kept with
  probability ``p``, upsampled bilinearly with a random sub-cell shift; a pixel's
  saliency is the mean score of the masked images weighted by how much each kept the pixel,
  divided by ``p``.
- **Words**: the text without one of its words at a time; a word's importance is the drop of
  the score when it is missing.
- **Features**: for plain tensors, each element in turn set to the baseline; its attribution is
  the drop of the score.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.types import Array

__all__ = [
    "Occlusion",
    "Rise",
    "feature_chunks",
    "word_texts",
]


def _starts(size: int, patch: int, stride: int) -> list[int]:
    """Window starts along one axis: every ``stride``, plus one flush with the far edge."""
    if patch >= size:
        return [0]
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def _spatial(x: Array, axes: tuple[int, int], rows: slice, cols: slice) -> tuple[Any, ...]:
    """The index of a ``rows`` x ``cols`` region of ``x``, whose H and W are ``axes``."""
    index: list[Any] = [slice(None)] * x.ndim
    index[axes[0]], index[axes[1]] = rows, cols
    return tuple(index)


@dataclass(frozen=True, slots=True)
class Occlusion:
    """Occlusion windows over an ``height`` x ``width`` image."""

    height: int
    width: int
    patch: int
    stride: int

    @property
    def windows(self) -> list[tuple[int, int]]:
        """The top-left corner of every window, row by row."""
        return [
            (top, left)
            for top in _starts(self.height, self.patch, self.stride)
            for left in _starts(self.width, self.patch, self.stride)
        ]

    def chunks(
        self, x: Array, axes: tuple[int, int], baseline: float, size: int
    ) -> Iterator[tuple[int, Array]]:
        """``(first window, batch)``: copies of ``x`` (batch dim 1 first) occluded, ``size``
        windows per batch."""
        windows = self.windows
        for first in range(0, len(windows), size):
            part = windows[first : first + size]
            batch = np.repeat(x, len(part), axis=0)
            for i, (top, left) in enumerate(part):
                rows = slice(top, top + self.patch)
                cols = slice(left, left + self.patch)
                batch[i : i + 1][_spatial(x, axes, rows, cols)] = baseline
            yield first, batch

    def heatmap(self, drops: Array) -> Array:
        """Each pixel's mean drop over the windows covering it (``drops``: one per window)."""
        total = np.zeros((self.height, self.width), np.float64)
        count = np.zeros((self.height, self.width), np.float64)
        for (top, left), drop in zip(self.windows, drops, strict=True):
            total[top : top + self.patch, left : left + self.patch] += drop
            count[top : top + self.patch, left : left + self.patch] += 1
        out: Array = (total / np.maximum(count, 1)).astype(np.float32)
        return out


@dataclass(frozen=True, slots=True)
class Rise:
    """RISE random masks over an ``height`` x ``width`` image."""

    height: int
    width: int
    masks: int
    #: Cells per side of the coarse grid.
    cells: int
    #: Probability that a cell is kept.
    probability: float
    seed: int

    def chunks(
        self, x: Array, axes: tuple[int, int], baseline: float, size: int
    ) -> Iterator[tuple[Array, Array]]:
        """``(masks, batch)``: ``size`` masks (values in [0, 1], 1 = kept) and the masked
        copies of ``x`` (batch dim 1 first)."""
        rng = np.random.default_rng(self.seed)
        for first in range(0, self.masks, size):
            count = min(size, self.masks - first)
            masks = np.stack([self._mask(rng) for _ in range(count)])
            shape = [1] * x.ndim
            shape[0] = count
            shape[axes[0]], shape[axes[1]] = self.height, self.width
            weights = masks.reshape(shape).astype(np.float32)
            batch = np.repeat(x, count, axis=0).astype(np.float32, copy=False)
            batch = batch * weights + np.float32(baseline) * (1 - weights)
            yield masks, batch.astype(x.dtype, copy=False)

    def _mask(self, rng: np.random.Generator) -> Array:
        """One mask: a coarse grid, upsampled bilinearly, shifted by up to one cell."""
        cell_h = int(np.ceil(self.height / self.cells))
        cell_w = int(np.ceil(self.width / self.cells))
        grid = (rng.random((self.cells + 1, self.cells + 1)) < self.probability).astype(np.float32)
        up_h, up_w = (self.cells + 1) * cell_h, (self.cells + 1) * cell_w
        rows = np.clip((np.arange(up_h) + 0.5) / cell_h - 0.5, 0, self.cells)
        cols = np.clip((np.arange(up_w) + 0.5) / cell_w - 0.5, 0, self.cells)
        up = _bilinear(grid, rows, cols)
        dy, dx = int(rng.integers(0, cell_h)), int(rng.integers(0, cell_w))
        out: Array = up[dy : dy + self.height, dx : dx + self.width]
        return out

    def saliency(self, masks: Array | Sequence[Array], scores: Array | Sequence[float]) -> Array:
        """Sum of score x mask over the masks, divided by masks x probability."""
        stacked = np.asarray(masks, dtype=np.float64)
        weights = np.asarray(scores, dtype=np.float64)
        total = np.tensordot(weights, stacked, axes=(0, 0))
        out: Array = (total / (len(stacked) * self.probability)).astype(np.float32)
        return out


def _bilinear(grid: Array, rows: Array, cols: Array) -> Array:
    """Sample ``grid`` at fractional ``rows`` x ``cols`` positions, bilinearly."""
    r0 = np.floor(rows).astype(int)
    c0 = np.floor(cols).astype(int)
    r1 = np.minimum(r0 + 1, grid.shape[0] - 1)
    c1 = np.minimum(c0 + 1, grid.shape[1] - 1)
    fr = (rows - r0)[:, None]
    fc = (cols - c0)[None, :]
    top = grid[np.ix_(r0, c0)] * (1 - fc) + grid[np.ix_(r0, c1)] * fc
    bottom = grid[np.ix_(r1, c0)] * (1 - fc) + grid[np.ix_(r1, c1)] * fc
    out: Array = top * (1 - fr) + bottom * fr
    return out


def word_texts(text: str) -> tuple[list[str], list[str]]:
    """The words of ``text`` (split on white space) and the text without each, in order."""
    words = text.split()
    texts = [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
    return words, texts


def feature_chunks(x: Array, baseline: float, size: int) -> Iterator[tuple[int, Array]]:
    """``(first feature, batch)``: copies of ``x`` (batch dim 1 first), each with one more
    element (in row-major order, past the batch dim) set to ``baseline``."""
    features = int(np.prod(x.shape[1:], dtype=np.int64))
    for first in range(0, features, size):
        count = min(size, features - first)
        batch = np.repeat(x, count, axis=0)
        flat = batch.reshape(count, -1)
        flat[np.arange(count), np.arange(first, first + count)] = baseline
        yield first, flat.reshape(batch.shape)
