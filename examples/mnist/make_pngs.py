"""Render test digits to PNG files, for querying a served model with real images.

Usage::

    python examples/mnist/make_pngs.py [--out examples/mnist/build/pngs] [--count 20]

Writes ``OUT/<index>-<label>.png`` (8-bit grayscale, 28x28, white ink on black, as in MNIST)
for the first COUNT digits of the test split (the digits training never saw), and
``OUT/labels.csv`` (``file,label``). Needs Pillow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dataset import load_split  # noqa: E402


def write_pngs(out: Path, count: int) -> list[tuple[Path, int]]:
    """Write the first ``count`` test digits as PNGs under ``out``; return (file, label) pairs."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise SystemExit("make_pngs.py needs Pillow: pip install pillow") from exc
    _, (images, labels) = load_split()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(min(count, len(images))):
        path = out / f"{index:04d}-{int(labels[index])}.png"
        Image.fromarray(images[index]).save(path)
        written.append((path, int(labels[index])))
    lines = ["file,label", *(f"{p.name},{label}" for p, label in written)]
    (out / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and write the PNGs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "build" / "pngs")
    parser.add_argument("--count", type=int, default=20, help="how many (test split: 1,500)")
    args = parser.parse_args(argv)
    written = write_pngs(args.out, args.count)
    print(f"wrote {len(written)} PNGs and labels.csv to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
