"""Generate Shipyard's gRPC stubs from ``proto/*.proto`` (``make proto`` runs this).

Usage: ``python proto/generate.py OUT_DIR`` writes ``grpc_service_pb2.py``, ``.pyi`` and
``grpc_service_pb2_grpc.py`` (from ``grpc_service.proto``) and ``health_pb2.py`` and ``.pyi``
(from ``health.proto``, messages only: the server answers it itself) into OUT_DIR
(``src/shipyard/protocol`` for the committed copy; a test writes them into a temporary folder
and compares).

protoc's output gets these edits, each checked to apply exactly once:

- the messages are built in a private descriptor pool, not protobuf's default one: tritonclient's
  stubs declare the same ``inference.*`` names (and grpcio-health-checking the same
  ``grpc.health.v1.*`` ones), and a process importing both (any test that runs a server and a
  gRPC client together) would otherwise fail with "duplicate symbol";
- the service module imports the messages from ``shipyard.protocol``, not as a top-level module.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
#: Each proto file and whether protoc also writes its service stubs (``*_pb2_grpc.py``).
PROTOS = {"grpc_service.proto": True, "health.proto": False}
_PRIVATE_POOL = (
    "_descriptor_pool.Default().AddSerializedFile(",
    "_descriptor_pool.DescriptorPool().AddSerializedFile(",
)

_EDITS = {
    "grpc_service_pb2.py": [_PRIVATE_POOL],
    "health_pb2.py": [_PRIVATE_POOL],
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
    for proto, services in PROTOS.items():
        argv = ["grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}"]
        argv.append(f"--pyi_out={out_dir}")
        if services:
            argv.append(f"--grpc_python_out={out_dir}")
        status = protoc.main([*argv, str(PROTO_DIR / proto)])
        if status != 0:
            raise SystemExit(f"protoc failed on {proto} with status {status}")
    for name, edits in _EDITS.items():
        path = out_dir / name
        text = path.read_text(encoding="utf-8")
        for old, new in edits:
            if text.count(old) != 1:
                raise SystemExit(f"{name}: expected exactly one {old!r} in protoc's output")
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
    return sorted(p for name in PROTOS for p in out_dir.glob(f"{name[:-6]}_pb2*"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python proto/generate.py OUT_DIR")
    for written in generate(Path(sys.argv[1])):
        print(written)
