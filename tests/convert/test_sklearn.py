"""scikit-learn sources: a joblib-saved Pipeline, the pickle guard, and parity failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.testing import running_server
from tests.convert.conftest import infer, run_cli

joblib = pytest.importorskip("joblib")
pytest.importorskip("skl2onnx")


@pytest.fixture
def pipeline(tmp_path: Path) -> tuple[Path, Any]:
    """A fitted Pipeline(StandardScaler, LogisticRegression) on 4 features, 3 classes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 0.5)
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(x, y)
    path = tmp_path / "pipe.joblib"
    joblib.dump(model, path)
    return path, model


def test_pipeline_converted_served_matches_sklearn(pipeline: tuple[Path, Any], repo: Path) -> None:
    """The converted pipeline serves the labels and probabilities scikit-learn computes."""
    path, model = pipeline
    result = run_cli(path, "--name", "pipe", "--repo", repo, "--trust-pickle")
    assert result.exit_code == 0, result.output
    report = json.loads((repo / "pipe" / "1" / "report.json").read_text())
    assert [row["name"] for row in report["parity"]["outputs"]] == ["label", "probabilities"]
    assert report["parity"]["passed"] is True
    data = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    with running_server(repo) as server:
        outputs = infer(server.url, "pipe", "input", data)
    np.testing.assert_array_equal(outputs["label"], model.predict(data))
    np.testing.assert_allclose(outputs["probabilities"], model.predict_proba(data), atol=1e-5)


def test_untrusted_pickle_is_refused(pipeline: tuple[Path, Any], repo: Path) -> None:
    """Without --trust-pickle the file is not loaded; the message says pickles execute code."""
    result = run_cli(pipeline[0], "--name", "pipe", "--repo", repo)
    assert result.exit_code == 2
    assert "executes code" in result.output
    assert "--trust-pickle" in result.output
    assert not (repo / "pipe").exists()


def test_parity_failure_publishes_nothing(pipeline: tuple[Path, Any], repo: Path) -> None:
    """Zero tolerances on float64-vs-float32 probabilities fail parity: exit 1, no version."""
    result = run_cli(
        pipeline[0],
        "--name",
        "pipe",
        "--repo",
        repo,
        "--trust-pickle",
        "--atol",
        "0",
        "--rtol",
        "0",
    )
    assert result.exit_code == 1
    assert "parity: FAILED" in result.output
    assert "nothing was published" in result.output
    assert not (repo / "pipe").exists()


def test_allow_mismatch_publishes_and_records_it(pipeline: tuple[Path, Any], repo: Path) -> None:
    """--allow-mismatch publishes a failing conversion and marks it in report.json."""
    result = run_cli(
        pipeline[0],
        "--name",
        "pipe",
        "--repo",
        repo,
        "--trust-pickle",
        "--atol",
        "0",
        "--rtol",
        "0",
        "--allow-mismatch",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((repo / "pipe" / "1" / "report.json").read_text())
    assert report["parity"]["passed"] is False
    assert report["published_despite_mismatch"] is True
