"""The gRPC adapter: `create_grpc_server(service, address) -> (server, port)` (docs/architecture.md).

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
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from synth.errors import InvalidArgument, Violation
from synth.service import to_dict
from synth.server.admission import Admission
from synth.server.auth import AccessPolicy
from synth.server.grpc.admission import AdmissionInterceptor
from synth.server.grpc.auth import AuthInterceptor, current_caller
from synth.server.grpc.errors import ExceptionToStatusInterceptor
from synth.service import JobRequest, SynthService
from synth_contract._proto import synthesizer_pb2 as pb
from synth_contract._proto import synthesizer_pb2_grpc as pb_grpc
from synth_contract.grpc_wire import job_to_pb, latent_to_pb, model_detail_to_pb, model_info_to_pb

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Synthesizer"].full_name


# ----------------------------------------------------------------------------- conversion

def plain(value: Any) -> Any:
    """Struct numbers are doubles; give integral ones back as ints (`where` on int fields)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def from_struct(struct: Any) -> dict[str, Any]:
    """A `google.protobuf.Struct` as plain Python, like `plain(MessageToDict(struct))`, except that
    NaN and infinities stay floats (MessageToDict raises on them): the service refuses them
    with a 4xx naming the field, as it does on REST."""
    return {key: _from_value(value) for key, value in struct.fields.items()}


def _from_value(value: Any) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return from_struct(value.struct_value)
    if kind == "list_value":
        return [_from_value(v) for v in value.list_value.values]
    if kind == "number_value":
        return plain(value.number_value)
    if kind in ("string_value", "bool_value"):
        return getattr(value, kind)
    return None  # null_value, or no kind set


def record_in(record: pb.Record) -> Any:
    """A wire record as the service takes it: a JSON dict, or the user's serialized bytes."""
    if record.WhichOneof("record") == "binary":
        return record.binary
    return from_struct(record.json) if record.HasField("json") else {}


def record_out(message: Message, fmt: int) -> pb.Record:
    if fmt == pb.RECORD_FORMAT_BINARY:
        return pb.Record(binary=message.SerializeToString())
    # Struct.update takes the JSON-mapping dict as it is: ~3x faster than json_format.ParseDict
    # (struct_of), which streams of 100,000 records notice (docs/benchmarks.md, Performance).
    record = pb.Record()
    record.json.update(to_dict(message))
    return record


def records_out(messages: list[Message], fmt: int) -> list[pb.Record]:
    return [record_out(m, fmt) for m in messages]


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
        return pb.ListModelsResponse(models=[model_info_to_pb(m) for m in self.service.list_models()])

    def GetModel(self, request: pb.GetModelRequest, context: grpc.ServicerContext) -> pb.ModelDetail:
        return model_detail_to_pb(self.service.get_model(request.name))

    def Sample(self, request: pb.SampleRequest, context: grpc.ServicerContext) -> Iterator[pb.SampleResponse]:
        where = from_struct(request.where) if request.HasField("where") else None
        fmt = request.format
        chunks = self.service.sample_chunks(
            request.model, request.n, seed=_optional(request, "seed"),
            temperature=_optional(request, "temperature"), greedy=request.greedy, where=where,
            convert=lambda records: pb.SampleResponse(records=records_out(records, fmt)))
        stop = _stop_event(context)
        for response in chunks:
            if stop.is_set():
                return
            yield response

    def Encode(self, request: pb.EncodeRequest, context: grpc.ServicerContext) -> pb.EncodeResponse:
        latents = self.service.encode(request.model, [record_in(r) for r in request.records])
        return pb.EncodeResponse(latents=[latent_to_pb(l) for l in latents])

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
            name=request.name or None), current_caller())
        return job_to_pb(job)

    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.Job:
        return job_to_pb(self.service.get_job(request.id))

    def WatchJob(self, request: pb.WatchJobRequest, context: grpc.ServicerContext) -> Iterator[pb.Job]:
        stop = _stop_event(context)
        for status in self.service.watch_job(request.id, should_stop=stop.is_set):
            yield job_to_pb(status)

    def CancelJob(self, request: pb.CancelJobRequest, context: grpc.ServicerContext) -> pb.Job:
        return job_to_pb(self.service.cancel_job(request.id, current_caller()))

    def ListJobs(self, request: pb.ListJobsRequest, context: grpc.ServicerContext) -> pb.ListJobsResponse:
        return pb.ListJobsResponse(jobs=[job_to_pb(j) for j in self.service.list_jobs(current_caller())])

    def DeleteModel(self, request: pb.DeleteModelRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        return model_info_to_pb(self.service.delete_model(request.name, current_caller()))


# ----------------------------------------------------------------------------- factory

def create_grpc_server(service: SynthService, address: str, max_workers: int = 16,
                       access: AccessPolicy | None = None,
                       tls: tuple[bytes, bytes] | None = None, admission: Admission | None = None,
                       reserved_workers: int | None = None) -> tuple[grpc.Server, int]:
    """A server (not yet started) with Synthesizer, health and reflection bound to `address`.

    `address` may use port 0; the bound port is returned. Start it with `.start()`.
    Long streams (Sample, WatchJob) each hold a worker thread, hence `max_workers`.
    `access` holds the API tokens (default: none); `tls` is (certificate chain PEM,
    private key PEM) to serve TLS instead of plaintext. `admission` bounds streams and sets deadlines
    (shared with the REST app in `synth serve`); `reserved_workers` threads (default: a quarter, at most
    4) never run Synthesizer calls, so health and reflection answer while every stream is busy.
    """
    if reserved_workers is None:
        reserved_workers = min(4, max_workers // 4)
    capacity = max(1, max_workers - reserved_workers)
    max_message = service.limits.max_upload_bytes + (1 << 20)  # a CreateJob upload plus headroom
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="synth-grpc"),
        # Outermost first: an Unauthenticated raised by AuthInterceptor becomes a mapped status; admission
        # runs after authentication, so a refused caller never takes a worker or a stream slot.
        interceptors=[ExceptionToStatusInterceptor(), AuthInterceptor(access or AccessPolicy()),
                      AdmissionInterceptor(admission or Admission(), capacity,
                                           service.limits.sample_chunk)],
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
    if tls is not None:
        cert, key = tls
        port = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind the gRPC server to {address}")
    return server, port
