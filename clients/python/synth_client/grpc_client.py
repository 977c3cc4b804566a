"""The gRPC transport: the committed stubs in `_proto`, records as Struct (or bytes with binary=True).

Errors: the server's rich status (`grpc-status-details-bin` trailer, a
google.rpc.Status) carries an ErrorInfo whose `reason` is the protosynth error
code and a BadRequest with the field violations; both are read here, with the
plain gRPC code as the fallback.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format, struct_pb2

from synth_client._proto import synthesizer_pb2 as pb
from synth_client._proto import synthesizer_pb2_grpc as pb_grpc
from synth_client.base import SynthClient
from synth_client.errors import SynthError, Violation, make_error
from synth_client.results import (Field, GeoFields, Interpolation, Job, JobError, Latent, ModelDetail,
                                  ModelInfo, Record)

T = TypeVar("T")
STATES = {pb.JOB_STATE_QUEUED: "queued", pb.JOB_STATE_RUNNING: "running", pb.JOB_STATE_SUCCEEDED: "succeeded",
          pb.JOB_STATE_FAILED: "failed", pb.JOB_STATE_CANCELLED: "cancelled"}
MAX_MESSAGE = 80 << 20


class GrpcClient(SynthClient):
    """Like the REST client; `binary=True` on record-returning calls gives serialized messages
    (bytes of the model's own message; `get_model(name).message_class()` parses them), and
    record arguments may be such bytes too."""

    def __init__(self, target: str, timeout: float = 120.0, credentials: grpc.ChannelCredentials | None = None):
        options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
        self._channel = (grpc.secure_channel(target, credentials, options) if credentials is not None
                         else grpc.insecure_channel(target, options))
        self._stub = pb_grpc.SynthesizerStub(self._channel)
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
        return [_info(m) for m in self._call(self._stub.ListModels, pb.ListModelsRequest()).models]

    def get_model(self, name: str) -> ModelDetail:
        d = self._call(self._stub.GetModel, pb.GetModelRequest(name=name))
        return ModelDetail(**vars(_info(d.info)), proto=d.proto, file_descriptor_set=d.file_descriptor_set,
                           model_config=_dict(d.model_config), train_config=_dict(d.train_config),
                           summary=_dict(d.summary), metrics=_dict(d.metrics))

    # -- inference ------------------------------------------------------------------------
    def iter_sample(self, model: str, n: int, seed: int | None = None, temperature: float | None = None,
                    where: Mapping[str, Any] | None = None, greedy: bool = False,
                    binary: bool = False) -> Iterator[Any]:
        request = pb.SampleRequest(model=model, n=n, seed=seed, temperature=temperature, greedy=greedy,
                                   format=_format(binary))
        if where:
            request.where.CopyFrom(_struct(dict(where)))
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
        return [Latent(list(l.mean), list(l.std)) for l in out.latents]

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
        return _job(self._call(self._stub.CreateJob, request))

    def get_job(self, job_id: str) -> Job:
        return _job(self._call(self._stub.GetJob, pb.GetJobRequest(id=job_id)))

    def cancel_job(self, job_id: str) -> Job:
        return _job(self._call(self._stub.CancelJob, pb.CancelJobRequest(id=job_id)))

    def wait_job(self, job_id: str, timeout: float | None = None,
                 on_progress: Callable[[Job], None] | None = None, poll_s: float = 0.5) -> Job:
        """Follow the job with the WatchJob stream (no polling) until it is finished."""
        start = time.monotonic()
        stream = self._stub.WatchJob(pb.WatchJobRequest(id=job_id), timeout=timeout)
        job = None
        try:
            for update in stream:
                job = _job(update)
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


# ----------------------------------------------------------------------------- conversion

def rpc_error(e: grpc.RpcError) -> SynthError:
    """The client exception for a failed call, from the rich status when present."""
    code = e.code() if hasattr(e, "code") else None
    grpc_code = code.name if code is not None else None
    message = e.details() if hasattr(e, "details") else str(e)
    reason, details, violations = None, {}, []
    for key, value in (e.trailing_metadata() or ()) if hasattr(e, "trailing_metadata") else ():
        if key == "grpc-status-details-bin":
            reason, details, violations = _rich_details(value)
    return make_error(reason, message or "", details, grpc_code=grpc_code, violations=violations)


def _rich_details(blob: bytes) -> tuple[str | None, dict[str, Any], list[Violation]]:
    try:
        from google.rpc import error_details_pb2, status_pb2
    except ImportError:  # googleapis-common-protos missing: fall back to the gRPC code
        return None, {}, []
    status = status_pb2.Status.FromString(blob)
    reason, details, violations = None, {}, []
    for any_ in status.details:
        if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_.Unpack(info)
            reason, details = info.reason, dict(info.metadata)
        elif any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            any_.Unpack(bad)
            violations = [Violation(v.field, v.description) for v in bad.field_violations]
    return reason, details, violations


def _format(binary: bool) -> int:
    return pb.RECORD_FORMAT_BINARY if binary else pb.RECORD_FORMAT_JSON


def _struct(d: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    json_format.ParseDict(dict(d), s)
    return s


def _dict(s: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(s)


def _record_in(record: Any) -> pb.Record:
    if isinstance(record, (bytes, bytearray)):
        return pb.Record(binary=bytes(record))
    if hasattr(record, "SerializeToString"):  # a message of the model's class
        return pb.Record(binary=record.SerializeToString())
    if not isinstance(record, Mapping):
        raise TypeError(f"a record must be a dict, bytes or a message, not {type(record).__name__}")
    return pb.Record(json=_struct(record))


def _record_out(record: pb.Record) -> Record | bytes:
    if record.WhichOneof("record") == "binary":
        return record.binary
    return json_format.MessageToDict(record.json)


def _info(m: pb.ModelInfo) -> ModelInfo:
    return ModelInfo(name=m.name, message=m.message, latent_dim=m.latent_dim, source=m.source,
                     fields=[Field(f.name, f.path, f.type, f.repeated) for f in m.fields],
                     geo=GeoFields(m.geo.lat, m.geo.lon) if m.HasField("geo") else None)


def _job(j: pb.Job) -> Job:
    progress = ({f.name: float(getattr(j.progress, f.name)) for f in j.progress.DESCRIPTOR.fields}
                if j.HasField("progress") else {})
    return Job(id=j.id, name=j.name, state=STATES.get(j.state, "unknown"), step=j.step, steps=j.steps,
               losses=dict(j.losses), progress=progress,
               error=JobError(j.error.code, j.error.message) if j.HasField("error") else None,
               cancel_requested=j.cancel_requested, created_at=j.created_at,
               started_at=j.started_at or None, finished_at=j.finished_at or None)
