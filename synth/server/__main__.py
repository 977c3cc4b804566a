"""`python -m server [--models DIR] [--host H] [--http-port P] [--grpc-port Q]`: the same as `synth serve`."""
from __future__ import annotations

import argparse

from server.main import serve


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m server", description="Serve protosynth models over REST and gRPC.")
    p.add_argument("--models", default="models", help="directory of trained models (default ./models)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 for all)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=50051)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    a = p.parse_args(argv)
    serve(a.models, a.host, a.http_port, a.grpc_port, device=a.device)


if __name__ == "__main__":
    main()
