"""The perturbations of an explanation and how their scores fold back (no model involved)."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.errors import InvalidInputError
from shipyard.explain.options import parse_options
from shipyard.explain.perturb import Occlusion, Rise, feature_chunks, word_texts


def test_occlusion_windows_cover_every_pixel_and_hide_only_their_square() -> None:
    """Windows step by the stride, one more is flush with the far edge, and each perturbed copy
    differs from the image exactly on its window."""
    occlusion = Occlusion(10, 7, patch=4, stride=3)
    assert occlusion.windows == [(t, left) for t in (0, 3, 6) for left in (0, 3)]
    x = np.ones((1, 1, 10, 7), np.float32)
    batches = list(occlusion.chunks(x, (2, 3), baseline=0.0, size=4))
    assert [first for first, _ in batches] == [0, 4]
    stacked = np.concatenate([batch for _, batch in batches])
    covered = np.zeros((10, 7), bool)
    for (top, left), copy in zip(occlusion.windows, stacked, strict=True):
        hidden = copy[0] == 0
        assert hidden.sum() == 16
        assert hidden[top : top + 4, left : left + 4].all()
        covered |= hidden
    assert covered.all()


def test_occlusion_heatmap_is_the_mean_drop_of_covering_windows() -> None:
    """A pixel covered by two windows gets the mean of their drops."""
    occlusion = Occlusion(2, 3, patch=2, stride=1)
    assert occlusion.windows == [(0, 0), (0, 1)]
    heat = occlusion.heatmap(np.array([1.0, 3.0]))
    np.testing.assert_allclose(heat, [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])


def test_rise_masks_are_reproducible_and_in_range() -> None:
    """The same seed gives the same masks; values lie in [0, 1] and the masked copies blend the
    image with the baseline by them."""
    rise = Rise(12, 12, masks=5, cells=3, probability=0.5, seed=4)
    x = np.full((1, 12, 12, 1), 2.0, np.float32)
    first = list(rise.chunks(x, (1, 2), baseline=0.0, size=2))
    again = list(rise.chunks(x, (1, 2), baseline=0.0, size=2))
    assert [len(m) for m, _ in first] == [2, 2, 1]
    for (masks, batch), (masks2, _) in zip(first, again, strict=True):
        np.testing.assert_array_equal(masks, masks2)
        assert masks.min() >= 0
        assert masks.max() <= 1
        np.testing.assert_allclose(batch[..., 0], 2.0 * masks, rtol=1e-6)
    masks = [m for part, _ in first for m in part]
    np.testing.assert_allclose(rise.saliency(masks, [1.0] * 5), np.mean(masks, axis=0) / 0.5)


def test_words_and_features() -> None:
    """Each text drops one word; each feature copy resets one more element to the baseline."""
    words, texts = word_texts("the  cat sat")
    assert words == ["the", "cat", "sat"]
    assert texts == ["cat sat", "the sat", "the cat"]
    x = np.arange(1, 7, dtype=np.float32).reshape(1, 2, 3)
    chunks = list(feature_chunks(x, -1.0, size=4))
    assert [first for first, _ in chunks] == [0, 4]
    copies = np.concatenate([batch for _, batch in chunks]).reshape(6, 6)
    np.testing.assert_array_equal(copies == -1, np.eye(6, dtype=bool))


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"masks": 0}, "masks must be an integer >= 1"),
        ({"cells": 1}, "cells must be an integer >= 2"),
        ({"baseline": "dark"}, "baseline must be a finite number"),
        ({"baseline": float("nan")}, "baseline must be a finite number"),
        ({"target": -1}, "target must be an integer >= 0"),
        ({"output": ""}, "output must be a non-empty string"),
    ],
)
def test_bad_parameters_are_named(parameters: dict[str, object], message: str) -> None:
    """Each bad parameter is an InvalidInputError naming it."""
    with pytest.raises(InvalidInputError, match=message):
        parse_options(parameters, "model 'm'")


def test_query_string_values_are_read() -> None:
    """Parameters from a query string (all strings) become numbers where numbers are meant."""
    options = parse_options({"patch": "3", "baseline": "0.5", "target": "7", "method": "rise"}, "m")
    assert (options.patch, options.baseline, options.target, options.method) == (3, 0.5, 7, "rise")
    assert parse_options({"target": "cat"}, "m").target == "cat"
