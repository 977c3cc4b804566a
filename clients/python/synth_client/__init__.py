"""Python client for a protosynth server, over REST or gRPC, without torch or protosynth.

    from synth_client import SynthClient
    with SynthClient.rest("http://localhost:8000") as c:      # or SynthClient.grpc("localhost:50051")
        records = c.sample("vermont-address", 10, seed=1, where={"postcode": "05401"})

REST needs httpx; gRPC needs grpcio, protobuf and googleapis-common-protos. The
gRPC stubs are committed in `synth_client/_proto` (regenerate with
`python -m server.gen_proto` in the protosynth repository).
"""
from synth_client.base import SynthClient
from synth_client.errors import (AlreadyExists, ArtifactError, Cancelled, ConfigError, DataError,
                                 FailedPrecondition, InternalError, InvalidArgument, NotFound, SchemaError,
                                 SynthError, TooLarge, Unavailable, VersionError, Violation)
from synth_client.results import (Field, GeoFields, Interpolation, Job, JobError, Latent, ModelDetail,
                                  ModelInfo)

__version__ = "0.1.0"
__all__ = [
    "SynthClient", "SynthError", "SchemaError", "ConfigError", "DataError", "InvalidArgument", "NotFound",
    "AlreadyExists", "FailedPrecondition", "TooLarge", "ArtifactError", "VersionError", "Cancelled",
    "InternalError", "Unavailable", "Violation", "Field", "GeoFields", "ModelInfo", "ModelDetail", "Latent",
    "Interpolation", "Job", "JobError",
]
