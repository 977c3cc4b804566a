"""Python client for a protosynth server, over REST or gRPC, without torch or protosynth.

    from synth_client import SynthClient
    with SynthClient.rest("http://localhost:8000") as c:      # or SynthClient.grpc("localhost:50051")
        records = c.sample("vermont-address", 10, seed=1, where={"postcode": "05401"})

REST needs httpx (`pip install protosynth-client[rest]`); gRPC needs grpcio,
protobuf and googleapis-common-protos (`[grpc]`). Errors and results are the wire
contract's (`synth_contract`), shared with the server.
"""
from importlib import metadata as _metadata
from typing import Any

from synth_client.base import SynthClient
from synth_contract.errors import (AlreadyExists, ArtifactError, Cancelled, ConfigError, DataError, DeadlineExceeded,
                                   FailedPrecondition, InsufficientStorage, InternalError, InvalidArgument, NotFound,
                                   PermissionDenied,
                                   ResourceExhausted, SchemaError, SynthError, TooLarge, Unauthenticated, Unavailable, VersionError,
                                   Violation)
from synth_contract.results import (Field, GeoFields, Interpolation, Job, JobError, Latent, ModelDetail,
                                    ModelInfo)


def _rest(url: str, timeout: float = 120.0, token: str | None = None, **httpx_options: Any) -> SynthClient:
    """A REST client; `token` is sent as `Authorization: Bearer`; for an https URL with a private CA
    pass `verify="ca.pem"` (or an `ssl.SSLContext`): other keywords go to `httpx.Client`."""
    from synth_client.rest_client import RestClient  # imported on use: a gRPC-only install has no httpx

    return RestClient(url, timeout=timeout, token=token, **httpx_options)


def _grpc(target: str, timeout: float = 120.0, credentials: Any = None, token: str | None = None) -> SynthClient:
    """A gRPC client; `token` is sent as `authorization: Bearer` metadata; for TLS pass
    `credentials=grpc.ssl_channel_credentials(root_certificates=...)`."""
    from synth_client.grpc_client import GrpcClient  # imported on use: a REST-only install has no grpcio

    return GrpcClient(target, timeout=timeout, credentials=credentials, token=token)


SynthClient.rest = staticmethod(_rest)  # type: ignore[assignment]
SynthClient.grpc = staticmethod(_grpc)  # type: ignore[assignment]

try:
    __version__ = _metadata.version("protosynth-client")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"

__all__ = [
    "SynthClient", "SynthError", "SchemaError", "ConfigError", "DataError", "InvalidArgument", "NotFound",
    "AlreadyExists", "FailedPrecondition", "TooLarge", "ResourceExhausted", "InsufficientStorage", "ArtifactError", "VersionError", "Cancelled",
    "Unauthenticated", "PermissionDenied", "InternalError", "Unavailable", "DeadlineExceeded", "Violation", "Field", "GeoFields", "ModelInfo", "ModelDetail", "Latent",
    "Interpolation", "Job", "JobError",
]
