"""Regenerate appliance/v1/*_pb2*.py from proto/ (``make proto``).

The generated modules are committed so that installing the appliance needs no
protoc; tests/unit/test_protogen.py fails when they are stale.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def proto_files() -> list[Path]:
    return sorted((PROTO_DIR / "appliance" / "v1").glob("*.proto"))


def generate(out_dir: Path = ROOT) -> None:
    import grpc_tools
    from google.api import annotations_pb2
    from grpc_tools import protoc

    googleapis = Path(annotations_pb2.__file__).resolve().parent.parent.parent
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{googleapis}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_DIR)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    init = out_dir / "appliance" / "v1" / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated from proto/appliance/v1 by appliance.protogen; do not edit."""\n')


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
