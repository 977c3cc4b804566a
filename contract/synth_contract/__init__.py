"""The wire contract of protosynth, shared by the server and the torch-free client.

- `synth_contract.errors`: the error classes, their stable codes, and the one
  mapping to HTTP statuses and gRPC codes;
- `synth_contract.results`: the result types (models, latents, jobs) and their JSON form;
- `synth_contract.grpc_wire`: the same results and errors as `synth.v1` messages
  (needs protobuf and googleapis-common-protos);
- `synth_contract._proto`: the stubs generated from `proto/synth/v1/synthesizer.proto`
  (`python -m synth_contract.gen_proto` regenerates them, `--check` tests them).

Importing this package loads neither torch nor grpc, nor protobuf.
"""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("protosynth-contract")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"
