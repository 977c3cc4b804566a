"""One error vocabulary for the whole project: the wire contract's classes.

The classes, their stable codes and their one mapping to HTTP and gRPC codes live
in `synth_contract.errors`, which the server and the torch-free client import
too, so an error raised here is the same class a client catches. Classify by type,
never by message text.
"""
from synth_contract.errors import (AlreadyExists, ArtifactError, Cancelled, ConfigError, DataError, DeadlineExceeded,
                                   FailedPrecondition, InsufficientStorage, InternalError, InvalidArgument, NotFound,
                                   PermissionDenied,
                                   ResourceExhausted, SchemaError, SynthError, TooLarge, Unauthenticated, Unavailable, VersionError,
                                   Violation)

__all__ = [
    "AlreadyExists", "ArtifactError", "Cancelled", "ConfigError", "DataError", "FailedPrecondition",
    "InternalError", "InvalidArgument", "NotFound", "PermissionDenied", "ResourceExhausted", "InsufficientStorage", "SchemaError", "SynthError", "TooLarge",
    "Unauthenticated", "Unavailable", "DeadlineExceeded", "VersionError", "Violation",
]
