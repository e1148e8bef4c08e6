"""Train the example MNIST CNN on 7,500 real digits; test on the other 1,500.

Usage::

    python examples/mnist/train.py [--out examples/mnist/build] [--epochs N] [--reuse]

Writes ``OUT/weights.pt`` (the model's state dict, for ``shipyard convert
examples/mnist/model.py:factory --weights OUT/weights.pt``), ``OUT/metrics.json`` (test
accuracy, epochs, seconds, and the cache key) and ``OUT/sample.npz`` (32 test digits as the
model's ``input``, for ``shipyard convert --sample``: a parity check on real digits).

With ``--reuse`` nothing is trained when ``OUT/metrics.json`` already carries the cache key of
this run: a hash of the code (model.py, dataset.py, train.py), the data and the settings.

Training is Adam on sparse categorical cross-entropy (cross-entropy on the logits; the exported
model ends in a softmax), with fixed seeds, deterministic algorithms and 2 threads, so a run
reproduces the same weights on the same machine and torch version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dataset import DATA, load_split, to_input  # noqa: E402
from model import MnistCNN  # noqa: E402

DEFAULT_OUT = HERE / "build"
DEFAULT_EPOCHS = 8


def cache_key(settings: dict[str, Any], data: Path = DATA) -> str:
    """SHA-256 over the code, the data and the training settings."""
    digest = hashlib.sha256()
    for path in (HERE / "model.py", HERE / "dataset.py", Path(__file__).resolve(), data):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def _shift(batch: torch.Tensor, generator: torch.Generator, pixels: int) -> torch.Tensor:
    """Random translation by up to ``pixels`` in each direction (zero padding), per image."""
    n = batch.shape[0]
    padded = nn.functional.pad(batch, (pixels, pixels, pixels, pixels))
    offsets = torch.randint(0, 2 * pixels + 1, (n, 2), generator=generator)
    rows = offsets[:, 0, None] + torch.arange(28)  # [n, 28]
    cols = offsets[:, 1, None] + torch.arange(28)
    index = torch.arange(n)[:, None, None]
    return padded[index, 0, rows[:, :, None], cols[:, None, :]][:, None]


def evaluate(model: MnistCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``x``, ``y``."""
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(chunk).argmax(1) for chunk in x.split(500)])
    return float((predicted == y).float().mean())


def train(settings: dict[str, Any], log: bool = True) -> tuple[MnistCNN, dict[str, Any]]:
    """Train from scratch with ``settings``; return the model and its metrics."""
    seed = int(settings["seed"])
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(int(settings["threads"]))
    (train_images, train_labels), (test_images, test_labels) = load_split()
    limit = settings.get("limit")
    if limit:
        train_images, train_labels = train_images[:limit], train_labels[:limit]
    x_train = torch.from_numpy(to_input(train_images))
    y_train = torch.from_numpy(train_labels)
    x_test = torch.from_numpy(to_input(test_images))
    y_test = torch.from_numpy(test_labels)

    model = MnistCNN()
    epochs = int(settings["epochs"])
    batch_size = int(settings["batch_size"])
    optimizer = torch.optim.Adam(model.parameters(), lr=float(settings["lr"]))
    steps = epochs * ((len(x_train) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=float(settings["lr"]), total_steps=steps
    )
    loss_fn = nn.CrossEntropyLoss()  # sparse categorical cross-entropy on the logits
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for batch in order.split(batch_size):
            images = x_train[batch]
            if settings["shift"]:
                images = _shift(images, generator, int(settings["shift"]))
            loss = loss_fn(model.logits(images), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        accuracy = evaluate(model, x_test, y_test)
        history.append({"epoch": epoch, "loss": total / len(x_train), "test_accuracy": accuracy})
        if log:
            print(
                f"epoch {epoch}/{epochs}  loss {total / len(x_train):.4f}  "
                f"test accuracy {accuracy:.4f}  ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    seconds = time.perf_counter() - started
    metrics = {
        "test_accuracy": history[-1]["test_accuracy"],
        "test_size": len(x_test),
        "train_size": len(x_train),
        "epochs": epochs,
        "seconds": round(seconds, 2),
        "settings": settings,
        "history": history,
        "torch": torch.__version__,
    }
    return model, metrics


def write_sample(out: Path, count: int = 32) -> Path:
    """``out/sample.npz``: the first ``count`` test digits as the model input ``input``."""
    _, (images, _) = load_split()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sample.npz"
    np.savez(path, input=to_input(images[:count]))
    return path


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train (or reuse a cached run), write weights.pt and metrics.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    parser.add_argument("--shift", type=int, default=2, help="random shift in pixels (0 = off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="train on the first N digits only")
    parser.add_argument(
        "--reuse", action="store_true", help="skip training when OUT holds this exact run"
    )
    args = parser.parse_args(argv)
    settings = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "shift": args.shift,
        "seed": args.seed,
        "threads": args.threads,
        "limit": args.limit,
    }
    key = cache_key(settings)
    weights, metrics_path = args.out / "weights.pt", args.out / "metrics.json"
    write_sample(args.out)
    if args.reuse and weights.is_file() and metrics_path.is_file():
        cached = json.loads(metrics_path.read_text(encoding="utf-8"))
        if cached.get("cache_key") == key:
            print(
                f"reusing {weights} (test accuracy {cached['test_accuracy']:.4f}, "
                f"trained in {cached['seconds']} s)"
            )
            return 0
    print(f"training on {DATA.name}: {settings}", flush=True)
    model, metrics = train(settings)
    metrics["cache_key"] = key
    metrics["load_average"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    partial = weights.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), partial)
    partial.replace(weights)
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(
        f"test accuracy {metrics['test_accuracy']:.4f} after {metrics['epochs']} epochs "
        f"in {metrics['seconds']} s; wrote {weights} and {metrics_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
