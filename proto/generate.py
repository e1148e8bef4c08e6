"""Generate Shipyard's gRPC stubs from ``proto/grpc_service.proto`` (``make proto`` runs this).

Usage: ``python proto/generate.py OUT_DIR`` writes ``grpc_service_pb2.py``, ``.pyi`` and
``grpc_service_pb2_grpc.py`` into OUT_DIR (``src/shipyard/protocol`` for the committed copy;
a test writes them into a temporary folder and compares).

protoc's output gets two edits, each checked to apply exactly once:

- the messages are built in a private descriptor pool, not protobuf's default one: tritonclient's
  stubs declare the same ``inference.*`` names, and a process importing both (any test that runs
  a server and a gRPC client together) would otherwise fail with "duplicate symbol";
- the service module imports the messages from ``shipyard.protocol``, not as a top-level module.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PROTO = "grpc_service.proto"

_EDITS = {
    "grpc_service_pb2.py": [
        (
            "_descriptor_pool.Default().AddSerializedFile(",
            "_descriptor_pool.DescriptorPool().AddSerializedFile(",
        )
    ],
    "grpc_service_pb2_grpc.py": [
        (
            "import grpc_service_pb2 as grpc__service__pb2",
            "from shipyard.protocol import grpc_service_pb2 as grpc__service__pb2",
        )
    ],
}


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on the service definition, apply the edits, return the files written."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(PROTO_DIR / PROTO),
        ]
    )
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")
    for name, edits in _EDITS.items():
        path = out_dir / name
        text = path.read_text(encoding="utf-8")
        for old, new in edits:
            if text.count(old) != 1:
                raise SystemExit(f"{name}: expected exactly one {old!r} in protoc's output")
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
    return sorted(out_dir.glob("grpc_service_pb2*"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python proto/generate.py OUT_DIR")
    for written in generate(Path(sys.argv[1])):
        print(written)
