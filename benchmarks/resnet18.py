"""ResNet-18 as an ONNX file, for the compute-bound rows of ``serve_overhead.py``.

The architecture of He et al. (2015), 11.7 M parameters and about 1.8 GFLOP per 224x224 image,
written here in plain PyTorch (torchvision does not install beside the project's torch) with
seeded random weights: only the cost matters for serving. Input ``input`` FP32
``[-1, 3, 224, 224]``, output ``logits`` FP32 ``[-1, 1000]``. The file is cached in
``benchmarks/build/`` (git-ignored) and rebuilt when missing.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["resnet18_onnx"]

BUILD = Path(__file__).resolve().parent / "build"


def _model() -> object:
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.down(x))

    def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(Block(cin, cout, stride), Block(cout, cout, 1))

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        stage(64, 64, 1),
        stage(64, 128, 2),
        stage(128, 256, 2),
        stage(256, 512, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(512, 1000),
    ).eval()


def resnet18_onnx(path: Path = BUILD / "resnet18.onnx") -> Path:
    """Write ResNet-18 to ``path`` (once) and return it."""
    if path.is_file():
        return path
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.onnx.export(
        _model(),
        (torch.rand(1, 3, 224, 224),),
        str(partial),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
        opset_version=17,
    )
    partial.replace(path)
    return path
