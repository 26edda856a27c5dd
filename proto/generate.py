"""Generates the Python stubs of the gRPC API (python/lookalike/v1/*_pb2*.py and
.pyi) from proto/lookalike/v1/*.proto. Run it after changing a .proto file:

    python proto/generate.py

tests/test_api_stubs.py regenerates into a temporary folder and fails when the
checked-in stubs differ, so a .proto change cannot ship without its stubs. The
stubs depend on the grpcio-tools version; the test extra pins it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
PYTHON_ROOT = PROTO_ROOT.parent / "python"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "lookalike" / "v1").glob("*.proto"))


def generate(out_root: Path = PYTHON_ROOT) -> list[Path]:
    """Writes the stubs under out_root/lookalike/v1/ and returns their paths."""
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = ["protoc", f"-I{PROTO_ROOT}", f"--python_out={out_root}", f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}", *files]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + ", ".join(files))
    return sorted(p for p in (out_root / "lookalike" / "v1").iterdir() if "_pb2" in p.name)


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(PYTHON_ROOT.parent), file=sys.stderr)
