"""The gRPC transport: the committed stubs in `_proto`, records as Struct (or bytes with binary=True).

Errors: the server's rich status (`grpc-status-details-bin` trailer, a
google.rpc.Status) carries an ErrorInfo whose `reason` is the protosynth error
code and a BadRequest with the field violations; both are read here, with the
plain gRPC code as the fallback.
"""
from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from synth_client.base import SynthClient
from synth_contract._proto import synthesizer_pb2 as pb
from synth_contract._proto import synthesizer_pb2_grpc as pb_grpc
from synth_contract.errors import SynthError
from synth_contract.grpc_wire import (error_of_status, job_from_pb, latent_from_pb, model_detail_from_pb,
                                      model_info_from_pb, struct_of)
from synth_contract.results import Interpolation, Job, Latent, ModelDetail, ModelInfo, Record

T = TypeVar("T")
MAX_MESSAGE = 80 << 20


class GrpcClient(SynthClient):
    """Like the REST client; `binary=True` on record-returning calls gives serialized messages
    (bytes of the model's own message; `get_model(name).message_class()` parses them), and
    record arguments may be such bytes too."""

    def __init__(self, target: str, timeout: float = 120.0, credentials: grpc.ChannelCredentials | None = None,
                 token: str | None = None):
        options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
        self._channel = (grpc.secure_channel(target, credentials, options) if credentials is not None
                         else grpc.insecure_channel(target, options))
        channel = grpc.intercept_channel(self._channel, _BearerToken(token)) if token else self._channel
        self._stub = pb_grpc.SynthesizerStub(channel)
        self.target, self.timeout = target, timeout

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., T], request: Any, timeout: float | None = None) -> T:
        try:
            return method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise rpc_error(e) from None

    # -- models ---------------------------------------------------------------------------
    def list_models(self) -> list[ModelInfo]:
        return [model_info_from_pb(m) for m in self._call(self._stub.ListModels, pb.ListModelsRequest()).models]

    def get_model(self, name: str) -> ModelDetail:
        d = self._call(self._stub.GetModel, pb.GetModelRequest(name=name))
        return model_detail_from_pb(d)

    def delete_model(self, name: str) -> ModelInfo:
        return model_info_from_pb(self._call(self._stub.DeleteModel, pb.DeleteModelRequest(name=name)))

    # -- inference ------------------------------------------------------------------------
    def iter_sample(self, model: str, n: int, seed: int | None = None, temperature: float | None = None,
                    where: Mapping[str, Any] | None = None, greedy: bool = False,
                    binary: bool = False) -> Iterator[Any]:
        request = pb.SampleRequest(model=model, n=n, seed=seed, temperature=temperature, greedy=greedy,
                                   format=_format(binary))
        if where:
            request.where.CopyFrom(struct_of(dict(where)))
        stream = self._stub.Sample(request, timeout=self.timeout)
        try:
            for chunk in stream:
                for r in chunk.records:
                    yield _record_out(r)
        except grpc.RpcError as e:
            raise rpc_error(e) from None
        finally:
            stream.cancel()  # no-op when finished; stops the server if the caller stopped early

    def sample(self, model: str, n: int, seed: int | None = None, temperature: float | None = None,
               where: Mapping[str, Any] | None = None, greedy: bool = False, binary: bool = False) -> list[Any]:
        return list(self.iter_sample(model, n, seed, temperature, where, greedy, binary))

    def encode(self, model: str, records: Sequence[Any]) -> list[Latent]:
        out = self._call(self._stub.Encode, pb.EncodeRequest(model=model, records=[_record_in(r) for r in records]))
        return [latent_from_pb(l) for l in out.latents]

    def decode(self, model: str, latents: Sequence[Sequence[float]], temperature: float | None = None,
               greedy: bool = False, seed: int | None = None, binary: bool = False) -> list[Any]:
        request = pb.DecodeRequest(model=model, latents=[pb.Vector(values=list(z)) for z in latents],
                                   temperature=temperature, greedy=greedy, seed=seed, format=_format(binary))
        return [_record_out(r) for r in self._call(self._stub.Decode, request).records]

    def interpolate(self, model: str, start: Any, end: Any, steps: int = 8, method: str = "linear",
                    binary: bool = False) -> Interpolation:
        request = pb.InterpolateRequest(model=model, from_record=_record_in(start), to_record=_record_in(end),
                                        steps=steps, method=method, format=_format(binary))
        out = self._call(self._stub.Interpolate, request)
        return Interpolation([_record_out(r) for r in out.records], [list(z.values) for z in out.latents])

    def reconstruct(self, model: str, records: Sequence[Any], binary: bool = False) -> list[Any]:
        request = pb.ReconstructRequest(model=model, records=[_record_in(r) for r in records], format=_format(binary))
        return [_record_out(r) for r in self._call(self._stub.Reconstruct, request).records]

    # -- jobs -----------------------------------------------------------------------------
    def _create_job(self, proto: str, proto_filename: str, message: str, data: bytes, data_filename: str,
                    config: str | None, name: str | None) -> Job:
        request = pb.CreateJobRequest(proto=proto, message=message, data=data, data_filename=data_filename,
                                      config=config or "", name=name or "")
        return job_from_pb(self._call(self._stub.CreateJob, request))

    def get_job(self, job_id: str) -> Job:
        return job_from_pb(self._call(self._stub.GetJob, pb.GetJobRequest(id=job_id)))

    def cancel_job(self, job_id: str) -> Job:
        return job_from_pb(self._call(self._stub.CancelJob, pb.CancelJobRequest(id=job_id)))

    def list_jobs(self) -> list[Job]:
        return [job_from_pb(j) for j in self._call(self._stub.ListJobs, pb.ListJobsRequest()).jobs]

    def wait_job(self, job_id: str, timeout: float | None = None,
                 on_progress: Callable[[Job], None] | None = None, poll_s: float = 0.5) -> Job:
        """Follow the job with the WatchJob stream (no polling) until it is finished."""
        start = time.monotonic()
        stream = self._stub.WatchJob(pb.WatchJobRequest(id=job_id), timeout=timeout)
        job = None
        try:
            for update in stream:
                job = job_from_pb(update)
                if on_progress is not None:
                    on_progress(job)
                if job.done:
                    return job
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise TimeoutError(f"job {job_id} not finished after {time.monotonic() - start:.0f}s") from None
            raise rpc_error(e) from None
        finally:
            stream.cancel()
        return job if job is not None else self.get_job(job_id)


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                            "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call (works on plaintext and TLS channels)."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, d: Any) -> _CallDetails:
        return _CallDetails(d.method, d.timeout, [*(d.metadata or ()), self._header], d.credentials,
                            getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)


# ----------------------------------------------------------------------------- conversion

def rpc_error(e: grpc.RpcError) -> SynthError:
    """The client exception for a failed call, from the rich status when present."""
    code = e.code() if hasattr(e, "code") else None
    message = e.details() if hasattr(e, "details") else str(e)
    blob = None
    for key, value in (e.trailing_metadata() or ()) if hasattr(e, "trailing_metadata") else ():
        if key == "grpc-status-details-bin":
            blob = value
    return error_of_status(blob, message or "", code.name if code is not None else "")


def _format(binary: bool) -> int:
    return pb.RECORD_FORMAT_BINARY if binary else pb.RECORD_FORMAT_JSON


def _record_in(record: Any) -> pb.Record:
    if isinstance(record, (bytes, bytearray)):
        return pb.Record(binary=bytes(record))
    if hasattr(record, "SerializeToString"):  # a message of the model's class
        return pb.Record(binary=record.SerializeToString())
    if not isinstance(record, Mapping):
        raise TypeError(f"a record must be a dict, bytes or a message, not {type(record).__name__}")
    return pb.Record(json=struct_of(record))


def _record_out(record: pb.Record) -> Record | bytes:
    if record.WhichOneof("record") == "binary":
        return record.binary
    return json_format.MessageToDict(record.json)


