"""The recommender example: trained on real MovieLens ratings, served with Python steps.

The fixture trains with ``train.py --reuse`` into ``examples/recommender/build/`` (about 20 s
on 2 cores when the cache is stale), writes the repository with ``build_repository.py`` and
serves it with ``allow_python_models``. The served top-k is checked against an offline
computation written here from the trained towers, independently of the example's code.
"""

from __future__ import annotations

import concurrent.futures
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from shipyard.testing import RunningServer, running_server
from tests.examples.conftest import ROOT, load_example, run
from tests.integration.transports import (
    TRANSPORTS,
    expected_status,
    infer_input,
    make_client,
    output_array,
)

EXAMPLE = ROOT / "examples" / "recommender"
BUILD = EXAMPLE / "build"
CANDIDATES, K = 300, 10


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    """The metrics of the trained towers in examples/recommender/build/ (trained if stale)."""
    result = run(sys.executable, EXAMPLE / "train.py", "--out", BUILD, "--reuse")
    assert result.returncode == 0, result.stdout + result.stderr
    metrics: dict[str, Any] = json.loads((BUILD / "metrics.json").read_text(encoding="utf-8"))
    return metrics


@pytest.fixture(scope="module")
def factors(trained: dict[str, Any]) -> Any:
    """The arrays train.py wrote."""
    return np.load(BUILD / "factors.npz")


@pytest.fixture(scope="module")
def server(
    trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The example repository, served with Python steps allowed."""
    repo = tmp_path_factory.mktemp("recommender") / "repo"
    result = run(sys.executable, EXAMPLE / "build_repository.py", repo, "--build", BUILD)
    assert result.returncode == 0, result.stdout + result.stderr
    with running_server(repo, allow_python_models=True) as running:
        yield running


def offline_top_k(factors: Any, user_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best unseen movies among the most popular ones, by the towers' dot product."""
    row = int(np.flatnonzero(factors["user_ids"] == user_id)[0])
    seen = factors["seen_indices"][factors["seen_indptr"][row] : factors["seen_indptr"][row + 1]]
    counts = np.zeros(len(factors["item_ids"]), np.int64)
    np.add.at(counts, factors["seen_indices"], 1)  # training interactions per movie
    popular = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
    pool = [i for i in popular if i not in set(seen.tolist())][:CANDIDATES]
    scores = factors["item_vectors"][pool].astype(np.float64) @ factors["user_vectors"][row]
    best = sorted(range(len(pool)), key=lambda n: (-scores[n], n))[:K]
    return factors["item_ids"][[pool[n] for n in best]], scores[best]


def recommend(transport: str, server: RunningServer, user_ids: list[int]) -> dict[str, np.ndarray]:
    """One request for ``user_ids``; the three outputs."""
    client = make_client(transport, server)
    try:
        x = np.array(user_ids, dtype=np.int64).reshape(-1, 1)
        result = client.infer("recommender", [infer_input(transport, "user_id", x)])
    finally:
        client.close()
    out = {name: output_array(transport, result, name) for name in ("item_ids", "scores", "titles")}
    assert all(v is not None for v in out.values())
    return out  # type: ignore[return-value]


def assert_same_ranking(
    served: np.ndarray, served_scores: np.ndarray, expected: np.ndarray, scores: np.ndarray
) -> None:
    """Equal rankings, where two movies may swap only if their scores tie (within 1e-5)."""
    np.testing.assert_allclose(served_scores, scores, rtol=1e-4, atol=1e-5)
    for position, (got, want) in enumerate(zip(served, expected, strict=True)):
        if got != want:
            index = list(expected).index(got) if got in expected else None
            assert index is not None, (position, got, expected)
            assert abs(scores[index] - scores[position]) < 1e-5, (position, got, want)


def test_the_model_learned_something(trained: dict[str, Any]) -> None:
    """On each user's held-out latest movie, the served pipeline beats popularity alone."""
    assert trained["users"] == 671
    assert trained["items"] == 9066
    assert trained["hit_rate_at_10_served_pipeline"] > trained["hit_rate_at_10_popularity"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_served_top_k_matches_the_offline_computation(
    transport: str, server: RunningServer, factors: Any
) -> None:
    """For several users in one batch, ids, scores and titles equal the offline top-k."""
    users = [1, 15, 42, 300, 671]
    out = recommend(transport, server, users)
    assert out["item_ids"].shape == (len(users), K)
    titles = dict(zip(factors["item_ids"].tolist(), factors["titles"].tolist(), strict=True))
    for n, user in enumerate(users):
        expected, scores = offline_top_k(factors, user)
        assert_same_ranking(out["item_ids"][n], out["scores"][n], expected, scores)
        assert [t.decode() for t in out["titles"][n]] == [titles[i] for i in out["item_ids"][n]]


def test_concurrent_users_each_get_their_own_top_k(server: RunningServer, factors: Any) -> None:
    """Requests batched together through the steps and the model are split back right."""
    users = list(range(100, 116))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda u: recommend("http", server, [u]), users))
    for user, out in zip(users, answers, strict=True):
        expected, scores = offline_top_k(factors, user)
        assert_same_ranking(out["item_ids"][0], out["scores"][0], expected, scores)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_user_is_a_client_error(transport: str, server: RunningServer) -> None:
    """A user_id the catalog does not know is a 400 saying which, raised by the Python step."""
    with pytest.raises(InferenceServerException) as caught:
        recommend(transport, server, [99999])
    assert caught.value.status() == expected_status(transport, "invalid")
    assert "unknown user_id 99999" in str(caught.value)


def test_steps_module_is_the_examples(trained: dict[str, Any], tmp_path: Path) -> None:
    """build_repository.py copies recommend.py unchanged into the version folder."""
    builder = load_example("build_repository", EXAMPLE)
    version = builder.build(tmp_path, BUILD)
    assert (version / "recommend.py").read_bytes() == (EXAMPLE / "recommend.py").read_bytes()
    assert {p.name for p in version.iterdir()} == {"model.onnx", "catalog.npz", "recommend.py"}
