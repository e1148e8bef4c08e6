"""Explanations of the demo's real models: the trained MNIST CNN on real test digits, and
all-MiniLM-L6-v2 (converted as the demo converts it; ~40 s, once per session).

The attributions are checked against what is known about the inputs, not against stored
answers: a digit's ink is where its evidence is, hiding the most-attributed patches must hurt
more than hiding random ones, and between two sentences that differ in one word that word is
what matters.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="the MNIST example trains with torch (the [torch] extra)")
pytest.importorskip("PIL", reason="the demo's processing needs Pillow ([processing])")

import httpx

from shipyard.testing import running_server
from tests.examples.conftest import MNIST, load_example

DIGITS = 50


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The first real MNIST test digits (uint8 28x28, white ink on black) and their labels."""
    _, (images, labels) = load_example("dataset", MNIST).load_split()
    return images[:DIGITS], labels[:DIGITS]


@pytest.fixture(scope="module")
def mnist(mnist_served: Path) -> Iterator[httpx.Client]:
    """A client of a real server on the demo's MNIST model (fp32, with its processing)."""
    with (
        running_server(mnist_served, grpc=False) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        yield client


def _explain(client: httpx.Client, pixels: np.ndarray, **params: Any) -> dict[str, Any]:
    response = client.post(
        "/v2/models/mnist/explain",
        content=_png(pixels),
        headers={"Content-Type": "image/png"},
        params=params,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _executions(client: httpx.Client) -> int:
    stats = client.get("/v2/models/mnist/stats").json()["model_stats"]
    return sum(int(s["execution_count"]) for s in stats)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_attribution_mass_lies_on_the_digit(
    mnist: httpx.Client, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """Over 50 real test digits, >= 80% of the positive occlusion attribution (3-pixel
    patches, stride 1) lies inside the bounding box of the digit's ink; each explanation's
    676 perturbations ran in at most a tenth as many executions (the server's statistics)."""
    images, labels = digits
    inside = []
    right = 0
    for pixels, label in zip(images, labels, strict=True):
        before = _executions(mnist)
        answer = _explain(mnist, pixels, patch=3, stride=1)
        executions = _executions(mnist) - before
        assert answer["perturbations"] == 26 * 26
        assert executions == answer["batches"]
        assert executions * 10 <= answer["perturbations"], executions
        right += answer["target"]["label"] == str(label)
        heat = np.clip(np.array(answer["attributions"]), 0, None)
        rows, cols = np.nonzero(pixels)
        box = heat[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        inside.append(box.sum() / heat.sum())
    assert right >= 48  # the top prediction explained is the digit (the CNN is ~98% right)
    assert float(np.mean(inside)) >= 0.8, np.round(inside, 3)


def _score(client: httpx.Client, pixels: np.ndarray, label: str) -> float:
    """The model's score for ``label`` on ``pixels`` (the explanation's target score: the
    processing's top-3 hides the others from /predict)."""
    answer = _explain(client, pixels, target=label, patch=28)
    assert answer["target"]["label"] == label
    return float(answer["target"]["score"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hiding_top_patches_hurts_more_than_hiding_random_ones(
    mnist: httpx.Client, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """Blacking out the 3 most-attributed 4x4 patches lowers the predicted digit's score more,
    on average over 20 digits, than blacking out 3 random patches (5 draws per digit)."""
    images, _ = digits
    rng = np.random.default_rng(0)
    top_drops, random_drops = [], []
    for pixels in images[:20]:
        answer = _explain(mnist, pixels, patch=4, stride=4)
        label, score = answer["target"]["label"], answer["target"]["score"]
        heat = np.array(answer["attributions"])
        cells = [(r, c) for r in range(0, 28, 4) for c in range(0, 28, 4)]
        ranked = sorted(cells, key=lambda rc: -heat[rc[0] : rc[0] + 4, rc[1] : rc[1] + 4].sum())

        def hidden(chosen: list[tuple[int, int]], pixels: np.ndarray = pixels) -> np.ndarray:
            out = pixels.copy()
            for r, c in chosen:
                out[r : r + 4, c : c + 4] = 0
            return out

        top_drops.append(score - _score(mnist, hidden(ranked[:3]), label))
        for _ in range(5):
            picks = rng.choice(len(cells), 3, replace=False)
            random_drops.append(score - _score(mnist, hidden([cells[i] for i in picks]), label))
    assert np.mean(top_drops) > np.mean(random_drops) + 0.05, (
        np.mean(top_drops),
        np.mean(random_drops),
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_rise_rates_the_ink_above_the_background(
    mnist: httpx.Client, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """RISE saliency (500 masks) is higher on the digit's ink than off it, for 5 digits."""
    images, _ = digits
    for pixels in images[:5]:
        answer = _explain(mnist, pixels, method="rise", masks=500, seed=1)
        heat = np.array(answer["attributions"])
        ink = pixels > 64
        assert heat[ink].mean() > heat[~ink].mean()
        assert answer["batches"] <= 500 // 32 + 2


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_png_overlay_of_a_digit(mnist: httpx.Client, digits: tuple[np.ndarray, np.ndarray]) -> None:
    """``Accept: image/png`` gives the digit with its heatmap drawn in red, 224 px wide."""
    from PIL import Image

    response = mnist.post(
        "/v2/models/mnist/explain",
        content=_png(digits[0][0]),
        headers={"Content-Type": "image/png", "Accept": "image/png"},
    )
    assert response.status_code == 200, response.text
    picture = np.asarray(Image.open(io.BytesIO(response.content)))
    assert picture.shape == (224, 224, 3)
    red = (picture[..., 0] > 150) & (picture[..., 1] < 100)
    assert red.sum() > 100  # the strongest attributions are drawn red over the digit


@pytest.fixture(scope="module")
def minilm(minilm_served: Path) -> Iterator[httpx.Client]:
    """A client of a real server on all-MiniLM-L6-v2 with the demo's processing."""
    with (
        running_server(minilm_served, grpc=False) as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
    ):
        yield client


PAIRS = [("It is a cat.", "It is a dog."), ("She plays the violin.", "She plays the drums.")]


def _words(client: httpx.Client, text: str, **params: Any) -> dict[str, float]:
    response = client.post(
        "/v2/models/minilm/explain",
        content=text.encode(),
        headers={"Content-Type": "text/plain"},
        params=params,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["kind"] == "text"
    # The sentence (and the reference), then every word's removal in one batch.
    assert answer["batches"] == 2 + ("reference" in params)
    return {entry["word"]: entry["importance"] for entry in answer["words"]}


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_minilm_the_differing_word_matters_most(minilm: httpx.Client) -> None:
    """For two sentences that differ in one word, that word has the highest importance in
    each (the drop of the cosine between the sentence's embedding and its own without it)."""
    for first, second in PAIRS:
        for text, other in ((first, second), (second, first)):
            differing = next(w for w, v in zip(text.split(), other.split(), strict=True) if w != v)
            alone = _words(minilm, text)
            assert max(alone, key=lambda w: alone[w]) == differing, alone


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_minilm_reference_score_is_the_served_cosine(minilm: httpx.Client) -> None:
    """Explained against a reference text, the score is the cosine of the two sentences'
    embeddings as /predict serves them, and each word's importance is that cosine minus the
    cosine without the word."""
    first, second = PAIRS[0]
    response = minilm.post(
        "/v2/models/minilm/predict",
        content=f"{first}\n{second}\n{' '.join(first.split()[1:])}".encode(),
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 200, response.text
    a, b, a_without_first = (np.array(p["embedding"]) for p in response.json()["predictions"])
    answer = minilm.post(
        "/v2/models/minilm/explain",
        content=first.encode(),
        headers={"Content-Type": "text/plain"},
        params={"reference": second},
    ).json()
    assert answer["target"]["score"] == pytest.approx(float(a @ b), abs=1e-4)
    first_word = answer["words"][0]
    assert first_word["word"] == first.split()[0]
    assert first_word["importance"] == pytest.approx(float(a @ b - a_without_first @ b), abs=1e-4)
