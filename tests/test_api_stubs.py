"""The checked-in gRPC stubs are exactly what the .proto files generate."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stubs_are_current(tmp_path):
    fresh = _generator().generate(tmp_path)
    assert [p.name for p in fresh] == sorted(
        p.name for p in (ROOT / "python" / "lookalike" / "v1").iterdir() if "_pb2" in p.name)
    for path in fresh:
        checked_in = ROOT / "python" / "lookalike" / "v1" / path.name
        assert checked_in.read_bytes() == path.read_bytes(), (
            f"{checked_in.name} is stale: run `python proto/generate.py` after changing proto/")


def test_every_message_field_is_commented():
    """The API's contract lives in its comments (DESIGN.md): no field without one."""
    for proto in sorted((ROOT / "proto" / "lookalike" / "v1").glob("*.proto")):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            stripped = line.strip()
            is_field = stripped.endswith(";") and "=" in stripped and not stripped.startswith(("option", "//"))
            if is_field:
                commented = "//" in line or lines[i - 1].strip().startswith("//") or _in_documented_block(lines, i)
                assert commented, f"{proto.name}:{i + 1}: field without a comment: {stripped}"


def _in_documented_block(lines, i):
    """A field of a small message or oneof whose comment sits above the block."""
    j = i - 1
    while j >= 0 and not lines[j].strip().endswith("{"):
        j -= 1
    return j > 0 and lines[j - 1].strip().startswith("//")
