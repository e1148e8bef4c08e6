"""Convert all-MiniLM-L6-v2 to ONNX with ``shipyard convert`` and publish it in a repository.

Usage::

    python examples/text-embeddings/convert.py [--out examples/text-embeddings/build]
                                               [--repo OUT/repo] [--name minilm]

Steps (each one printed):

1. ``OUT/sample.npz``: the example sentences tokenized (``input_ids``, ``attention_mask``),
   used as the parity inputs (random integers would make a meaningless attention mask);
2. ``OUT/tokenizer.json``: the package's tokenizer, copied unchanged, for the server's
   tokenize step;
3. ``shipyard convert examples/text-embeddings/model.py:factory --name NAME --repo REPO
   --input input_ids:INT64:-1,-1 --input attention_mask:INT64:-1,-1 --sample OUT/sample.npz``
   (parity: torch vs ONNX Runtime on the token embeddings).

Runs offline (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from embedding import SENTENCES, load_tokenizer, tokenize  # noqa: E402
from model import model_dir  # noqa: E402

OUT = HERE / "build"
SIGNATURE = ("input_ids:INT64:-1,-1", "attention_mask:INT64:-1,-1")


def convert_command(repo: Path, name: str, sample: Path) -> list[str]:
    """The ``shipyard convert`` command line for this model."""
    shipyard = Path(sys.executable).with_name("shipyard")
    command = [str(shipyard), "convert", f"{HERE / 'model.py'}:factory"]
    command += ["--name", name, "--repo", str(repo), "--sample", str(sample)]
    for spec in SIGNATURE:
        command += ["--input", spec]
    return command


def prepare(out: Path = OUT) -> Path:
    """Write ``out/sample.npz`` and ``out/tokenizer.json``; return the sample's path."""
    out.mkdir(parents=True, exist_ok=True)
    source = model_dir() / "tokenizer.json"
    shutil.copyfile(source, out / "tokenizer.json")
    print(f"copied {source} -> {out / 'tokenizer.json'}")
    sample = out / "sample.npz"
    np.savez(sample, **tokenize(load_tokenizer(source), SENTENCES))
    print(f"wrote {sample} ({len(SENTENCES)} tokenized sentences)")
    return sample


def main(argv: list[str] | None = None) -> int:
    """Prepare the inputs and run ``shipyard convert``; return its exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="sample.npz, tokenizer.json")
    parser.add_argument("--repo", type=Path, help="model repository (default: OUT/repo)")
    parser.add_argument("--name", default="minilm")
    args = parser.parse_args(argv)
    sample = prepare(args.out)
    command = convert_command(args.repo or args.out / "repo", args.name, sample)
    print("$", " ".join(command), flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
