"""Regenerate the Python stubs of `proto/synth/v1/synthesizer.proto` (needs grpcio-tools).

    python -m synth_contract.gen_proto                      # rewrite _proto/ beside this file
    python -m synth_contract.gen_proto --check              # exit 1 if the stubs are stale
    python -m synth_contract.gen_proto --package contract/synth_contract --check   # a source tree

The stubs are committed, so neither the server nor the torch-free client needs
grpcio-tools at run time; a test runs `--check` on the source tree. protoc emits
absolute imports (`from synth.v1 import synthesizer_pb2`), which would collide
with the `synth` library package, so they are rewritten to relative ones.
The floors of protobuf and grpcio in contract/pyproject.toml follow the versions
that generated them (the stubs refuse an older runtime).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
PROTO = "synth/v1/synthesizer.proto"
FILES = ("synthesizer_pb2.py", "synthesizer_pb2.pyi", "synthesizer_pb2_grpc.py")
INIT = '"""Generated stubs of synth/v1/synthesizer.proto (python -m synth_contract.gen_proto); do not edit."""\n'


def generate(package: Path = PACKAGE) -> dict[str, str]:
    """Run protoc (grpcio-tools) and return {file name: fixed-up source}."""
    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{package / 'proto'}", f"-I{include}",
               f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", PROTO]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"protoc failed:\n{proc.stderr}")
        out_dir = Path(tmp) / "synth" / "v1"
        return {name: _fix_imports((out_dir / name).read_text()) for name in FILES}


def _fix_imports(source: str) -> str:
    return re.sub(r"^from synth\.v1 import ", "from . import ", source, flags=re.M)


def stale_files(package: Path = PACKAGE) -> list[Path]:
    target = package / "_proto"
    files = {**generate(package), "__init__.py": INIT}
    return [target / n for n, text in files.items() if not (target / n).is_file() or (target / n).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the stubs are current")
    parser.add_argument("--package", type=Path, default=PACKAGE, help="the synth_contract package directory")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.package)
        for p in stale:
            print(f"stale: {p}")
        return 1 if stale else 0
    target = args.package / "_proto"
    target.mkdir(parents=True, exist_ok=True)
    for name, text in {**generate(args.package), "__init__.py": INIT}.items():
        (target / name).write_text(text)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
