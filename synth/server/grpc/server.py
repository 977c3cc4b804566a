"""The gRPC adapter: `create_grpc_server(service, address) -> (server, port)` (STYLE.md b, server/).

The servicer only converts protobuf requests to service arguments and results
back; exceptions become statuses in `ExceptionToStatusInterceptor`, from the
same table as REST. Also serves `grpc.health.v1` and server reflection, so
grpcurl and reflection-only clients work without our stubs. Streams stop when
the client goes away (`context.add_callback`, grpc's cancellation example).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.grpc_errors import ExceptionToStatusInterceptor
from synth.errors import InvalidArgument, Violation
from synth.records import to_dict
from synth.service import JobRequest, JobStatus, ModelInfo, SynthService
# The one committed copy of the stubs lives in the client package, which is always
# installed with the server (python -m server.gen_proto regenerates it).
from synth_client._proto import synthesizer_pb2 as pb
from synth_client._proto import synthesizer_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Synthesizer"].full_name
JOB_STATES = {"queued": pb.JOB_STATE_QUEUED, "running": pb.JOB_STATE_RUNNING,
              "succeeded": pb.JOB_STATE_SUCCEEDED, "failed": pb.JOB_STATE_FAILED,
              "cancelled": pb.JOB_STATE_CANCELLED}


# ----------------------------------------------------------------------------- conversion

def struct_of(d: dict[str, Any] | None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if d:
        json_format.ParseDict(d, s)
    return s


def plain(value: Any) -> Any:
    """Struct numbers are doubles; give integral ones back as ints (`where` on int fields)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def record_in(record: pb.Record) -> Any:
    """A wire record as the service takes it: a JSON dict, or the user's serialized bytes."""
    if record.WhichOneof("record") == "binary":
        return record.binary
    return plain(json_format.MessageToDict(record.json)) if record.HasField("json") else {}


def record_out(message: Message, fmt: int) -> pb.Record:
    if fmt == pb.RECORD_FORMAT_BINARY:
        return pb.Record(binary=message.SerializeToString())
    return pb.Record(json=struct_of(to_dict(message)))


def records_out(messages: list[Message], fmt: int) -> list[pb.Record]:
    return [record_out(m, fmt) for m in messages]


def model_info_pb(info: ModelInfo) -> pb.ModelInfo:
    out = pb.ModelInfo(name=info.name, message=info.message, latent_dim=info.latent_dim, source=info.source,
                       fields=[pb.Field(name=f.name, path=f.path, type=f.type, repeated=f.repeated)
                               for f in info.fields])
    if info.geo is not None:
        out.geo.CopyFrom(pb.GeoFields(lat=info.geo.lat, lon=info.geo.lon))
    return out


def job_pb(s: JobStatus) -> pb.Job:
    job = pb.Job(id=s.id, name=s.name, state=JOB_STATES.get(s.state, pb.JOB_STATE_UNSPECIFIED), step=s.step,
                 steps=s.steps, losses=s.losses, cancel_requested=s.cancel_requested,
                 created_at=s.created_at, started_at=s.started_at or 0.0, finished_at=s.finished_at or 0.0)
    if s.progress:
        known = {f.name for f in pb.JobProgress.DESCRIPTOR.fields}
        job.progress.CopyFrom(pb.JobProgress(**{k: (int(v) if k in ("step", "steps") else v)
                                                for k, v in s.progress.items() if k in known}))
    if s.error:
        job.error.CopyFrom(pb.JobError(code=str(s.error.get("code", "")), message=str(s.error.get("message", ""))))
    return job


def _optional(request: Message, name: str) -> Any:
    return getattr(request, name) if request.HasField(name) else None


def _stop_event(context: grpc.ServicerContext) -> threading.Event:
    """Set when the RPC ends for any reason, including the client cancelling it."""
    stop = threading.Event()
    context.add_callback(stop.set)
    return stop


# ----------------------------------------------------------------------------- servicer

class SynthesizerServicer(pb_grpc.SynthesizerServicer):
    def __init__(self, service: SynthService):
        self.service = service

    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[model_info_pb(m) for m in self.service.list_models()])

    def GetModel(self, request: pb.GetModelRequest, context: grpc.ServicerContext) -> pb.ModelDetail:
        d = self.service.get_model(request.name)
        return pb.ModelDetail(info=model_info_pb(d.info), proto=d.proto, file_descriptor_set=d.file_descriptor_set,
                              model_config=struct_of(d.model_config), train_config=struct_of(d.train_config),
                              summary=struct_of(d.summary), metrics=struct_of(d.metrics))

    def Sample(self, request: pb.SampleRequest, context: grpc.ServicerContext) -> Iterator[pb.SampleResponse]:
        where = plain(json_format.MessageToDict(request.where)) if request.HasField("where") else None
        chunks = self.service.sample_chunks(
            request.model, request.n, seed=_optional(request, "seed"),
            temperature=_optional(request, "temperature"), greedy=request.greedy, where=where)
        stop = _stop_event(context)
        for chunk in chunks:
            if stop.is_set():
                return
            yield pb.SampleResponse(records=records_out(chunk, request.format))

    def Encode(self, request: pb.EncodeRequest, context: grpc.ServicerContext) -> pb.EncodeResponse:
        latents = self.service.encode(request.model, [record_in(r) for r in request.records])
        return pb.EncodeResponse(latents=[pb.Latent(mean=l.mean, std=l.std) for l in latents])

    def Decode(self, request: pb.DecodeRequest, context: grpc.ServicerContext) -> pb.DecodeResponse:
        records = self.service.decode(request.model, [list(v.values) for v in request.latents],
                                      temperature=_optional(request, "temperature"), greedy=request.greedy,
                                      seed=_optional(request, "seed"))
        return pb.DecodeResponse(records=records_out(records, request.format))

    def Interpolate(self, request: pb.InterpolateRequest, context: grpc.ServicerContext) -> pb.InterpolateResponse:
        for name in ("from_record", "to_record"):
            if not request.HasField(name):
                raise InvalidArgument(f"{name} is required", [Violation(name, "missing")])
        result = self.service.interpolate(request.model, record_in(request.from_record),
                                          record_in(request.to_record), steps=request.steps or 8,
                                          method=request.method or "linear")
        return pb.InterpolateResponse(records=records_out(result.records, request.format),
                                      latents=[pb.Vector(values=z) for z in result.latents])

    def Reconstruct(self, request: pb.ReconstructRequest, context: grpc.ServicerContext) -> pb.ReconstructResponse:
        records = self.service.reconstruct(request.model, [record_in(r) for r in request.records])
        return pb.ReconstructResponse(records=records_out(records, request.format))

    def CreateJob(self, request: pb.CreateJobRequest, context: grpc.ServicerContext) -> pb.Job:
        job = self.service.create_job(JobRequest(
            proto=request.proto, message=request.message, data=request.data,
            data_filename=request.data_filename or "data", config=request.config or None,
            name=request.name or None))
        return job_pb(job)

    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.Job:
        return job_pb(self.service.get_job(request.id))

    def WatchJob(self, request: pb.WatchJobRequest, context: grpc.ServicerContext) -> Iterator[pb.Job]:
        stop = _stop_event(context)
        for status in self.service.watch_job(request.id, should_stop=stop.is_set):
            yield job_pb(status)

    def CancelJob(self, request: pb.CancelJobRequest, context: grpc.ServicerContext) -> pb.Job:
        return job_pb(self.service.cancel_job(request.id))


# ----------------------------------------------------------------------------- factory

def create_grpc_server(service: SynthService, address: str, max_workers: int = 16) -> tuple[grpc.Server, int]:
    """A server (not yet started) with Synthesizer, health and reflection bound to `address`.

    `address` may use port 0; the bound port is returned. Start it with `.start()`.
    Long streams (Sample, WatchJob) each hold a worker thread, hence `max_workers`.
    """
    max_message = service.limits.max_upload_bytes + (1 << 20)  # a CreateJob upload plus headroom
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="synth-grpc"),
        interceptors=[ExceptionToStatusInterceptor()],
        options=[("grpc.max_receive_message_length", max_message),
                 ("grpc.max_send_message_length", max_message)])
    pb_grpc.add_SynthesizerServicer_to_server(SynthesizerServicer(service), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind the gRPC server to {address}")
    return server, port
