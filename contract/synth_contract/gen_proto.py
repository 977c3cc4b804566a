"""Regenerate the Python stubs of `protos/synth/v1/synthesizer.proto`.

    python -m server.gen_proto          # rewrite clients/python/synth_client/_proto/
    python -m server.gen_proto --check  # exit 1 if the committed stubs are stale

The stubs are committed (so neither the server nor the torch-free client needs
grpcio-tools at run time) once, inside the client package, which must be
installable on its own; the server imports them from there (`synth_client._proto`),
since it is always installed together with the client. protoc emits absolute
imports (`from synth.v1 import synthesizer_pb2`), which would collide with our
`synth` library package, so they are rewritten to relative ones here.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO = "synth/v1/synthesizer.proto"
TARGET = ROOT / "clients" / "python" / "synth_client" / "_proto"
FILES = ("synthesizer_pb2.py", "synthesizer_pb2.pyi", "synthesizer_pb2_grpc.py")
INIT = '"""Generated stubs of synth/v1/synthesizer.proto (python -m server.gen_proto); do not edit."""\n'


def generate() -> dict[str, str]:
    """Run protoc (grpcio-tools) and return {file name: fixed-up source}."""
    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}",
               f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", PROTO]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"protoc failed:\n{proc.stderr}")
        out_dir = Path(tmp) / "synth" / "v1"
        return {name: _fix_imports((out_dir / name).read_text()) for name in FILES}


def _fix_imports(source: str) -> str:
    return re.sub(r"^from synth\.v1 import ", "from . import ", source, flags=re.M)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the stubs are current")
    args = parser.parse_args(argv)
    files = {**generate(), "__init__.py": INIT}
    stale = [TARGET / n for n, text in files.items()
             if not (TARGET / n).is_file() or (TARGET / n).read_text() != text]
    if args.check:
        for p in stale:
            print(f"stale: {p.relative_to(ROOT)}")
        return 1 if stale else 0
    TARGET.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (TARGET / name).write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
