"""The demo's real models served by OpenVINO give ONNX Runtime's answers (f32 by default).

The same model files are served twice in one repository, once with the default backend and
once with ``backend = "openvino"``; real inputs go to both through the HTTP API.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the MNIST example trains with torch (the [torch] extra)")
pytest.importorskip("PIL", reason="the demo's processing needs Pillow ([processing])")
pytest.importorskip("openvino", reason="needs OpenVINO (the [openvino] extra)")

import httpx

from shipyard.testing import running_server
from tests.examples.conftest import MNIST, TEXT, load_example


def _twins(source: Path, name: str, root: Path) -> Path:
    """``root`` with ``name`` as it is and ``name``-ov: the same files, backend openvino."""
    repo = root / "repo"
    shutil.copytree(source / name, repo / name)
    shutil.copytree(source / name, repo / f"{name}-ov")
    toml = repo / f"{name}-ov" / "model.toml"
    toml.write_text('backend = "openvino"\n' + toml.read_text(encoding="utf-8"), "utf-8")
    return repo


@pytest.fixture(scope="module")
def mnist(mnist_served: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A server with the trained MNIST CNN on ONNX Runtime (mnist) and OpenVINO (mnist-ov)."""
    repo = _twins(mnist_served, "mnist", tmp_path_factory.mktemp("mnist-ov"))
    with (
        running_server(repo, grpc=False) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        yield client


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_mnist_on_openvino_matches_onnxruntime(mnist: httpx.Client) -> None:
    """On 200 real test digits both engines give the same top-3 labels, scores within 1e-5,
    and the OpenVINO model reports its platform."""
    from PIL import Image

    _, (images, _labels) = load_example("dataset", MNIST).load_split()
    assert mnist.get("/v2/models/mnist-ov").json()["platform"] == "openvino"
    worst = 0.0
    for pixels in images[:200]:
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, format="PNG")
        answers = []
        for model in ("mnist", "mnist-ov"):
            response = mnist.post(
                f"/v2/models/{model}/predict",
                content=png.getvalue(),
                headers={"Content-Type": "image/png"},
            )
            assert response.status_code == 200, response.text
            answers.append(response.json()["predictions"][0]["top_k"])
        reference, openvino = answers
        assert [e["label"] for e in openvino] == [e["label"] for e in reference]
        diffs = [abs(a["score"] - b["score"]) for a, b in zip(reference, openvino, strict=True)]
        worst = max(worst, *diffs)
    assert worst <= 1e-5, worst


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_minilm_on_openvino_matches_onnxruntime(
    minilm_served: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The 20 example sentences (one longer than 128 tokens) get the same sentence
    embeddings from both engines: every cosine >= 0.99999, elements within 1e-4."""
    sentences = load_example("embedding", TEXT).SENTENCES
    repo = _twins(minilm_served, "minilm", tmp_path_factory.mktemp("minilm-ov"))
    with (
        running_server(repo, grpc=False) as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
    ):
        embeddings = []
        for model in ("minilm", "minilm-ov"):
            response = client.post(
                f"/v2/models/{model}/predict",
                content="\n".join(sentences).encode(),
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
            assert response.status_code == 200, response.text
            embeddings.append(np.array([p["embedding"] for p in response.json()["predictions"]]))
    reference, openvino = embeddings
    assert openvino.shape == reference.shape == (20, 384)
    assert (reference * openvino).sum(axis=1).min() >= 0.99999
    np.testing.assert_allclose(openvino, reference, atol=1e-4, rtol=0)
