"""The recommender's Python steps, run by Shipyard around the ONNX scoring model.

``build_repository.py`` copies this file into the model's version folder, beside
``model.onnx`` (the two towers) and ``catalog.npz`` (ids, titles, popularity, what each user
has seen). model.toml names the steps (``function = "recommend:Candidates"`` and
``"recommend:TopK"``); each runs in worker processes and is loaded once per worker.

1. :class:`Candidates` (pre-processing): a MovieLens ``user_id`` becomes the user's row in the
   user tower and the ``candidates`` to score: the most popular movies the user has not seen.
2. The ONNX model scores every candidate: the dot product of the user's and the movie's
   vectors.
3. :class:`TopK` (post-processing): the ``k`` best candidates, with their scores, MovieLens
   ids and titles.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

import shipyard
from shipyard.errors import InvalidInputError

Batch = dict[str, npt.NDArray[Any]]


class Candidates(shipyard.PythonModel):
    """user_id → user_index and the candidate movies (pre-processing step)."""

    def load(self, context: shipyard.ModelContext) -> None:
        """Read the catalog of the version folder."""
        catalog = np.load(context.version_dir / "catalog.npz")
        self.users = {int(user): row for row, user in enumerate(catalog["user_ids"])}
        self.popular = catalog["popular"]
        self.indptr = catalog["seen_indptr"]
        self.seen = catalog["seen_indices"]
        self.count = int(context.settings["candidates"])

    def predict(self, batch: Batch) -> Batch:
        """Look up each user and choose the movies to score."""
        ids = batch["user_id"][:, 0]
        unknown = [int(i) for i in ids if int(i) not in self.users]
        if unknown:  # a 400 for the client, with this message
            raise InvalidInputError(f"unknown user_id {unknown[0]} (users are 1..671)")
        rows = np.array([[self.users[int(i)]] for i in ids], dtype=np.int64)
        chosen = np.empty((len(ids), self.count), dtype=np.int64)
        for n, row in enumerate(rows[:, 0]):
            seen = self.seen[self.indptr[row] : self.indptr[row + 1]]
            chosen[n] = self.popular[~np.isin(self.popular, seen)][: self.count]
        return {"user_index": rows, "candidates": chosen}


class TopK(shipyard.PythonModel):
    """scores of the candidates → the top k movies (post-processing step)."""

    def load(self, context: shipyard.ModelContext) -> None:
        """Read the catalog of the version folder."""
        catalog = np.load(context.version_dir / "catalog.npz")
        self.item_ids = catalog["item_ids"]
        self.titles = np.array([t.encode() for t in catalog["titles"]], dtype=object)
        self.k = int(context.settings["k"])

    def predict(self, batch: Batch) -> Batch:
        """Sort each row's candidates by score (ties: the more popular first)."""
        scores, candidates = batch["scores"], batch["candidates"]
        order = np.argsort(-scores, axis=1, kind="stable")[:, : self.k]
        best = np.take_along_axis(candidates, order, axis=1)
        return {
            "item_ids": self.item_ids[best],
            "scores": np.take_along_axis(scores, order, axis=1),
            "titles": self.titles[best],
        }
