"""Results and errors <-> `synth.v1` messages: the one conversion both gRPC ends use.

Needs protobuf and googleapis-common-protos (for `google.rpc`), not grpcio: the
adapter and the client add the transport. Errors travel as a `google.rpc.Status`
with an `ErrorInfo` (reason = the error code of `synth_contract.errors`, domain
"protosynth") and, for located problems, a `BadRequest` with one field violation
per `Violation`.
"""
from __future__ import annotations

from typing import Any, Mapping

from google.protobuf import any_pb2, json_format, struct_pb2

from synth_contract._proto import synthesizer_pb2 as pb
from synth_contract.errors import SynthError, Violation, error_from_wire
from synth_contract.results import Field, GeoFields, Job, JobError, Latent, ModelDetail, ModelInfo

DOMAIN = "protosynth"
STATE_TO_PB = {"queued": pb.JOB_STATE_QUEUED, "running": pb.JOB_STATE_RUNNING,
               "succeeded": pb.JOB_STATE_SUCCEEDED, "failed": pb.JOB_STATE_FAILED,
               "cancelled": pb.JOB_STATE_CANCELLED}
STATE_FROM_PB = {v: k for k, v in STATE_TO_PB.items()}


def struct_of(d: Mapping[str, Any] | None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if d:
        json_format.ParseDict(dict(d), s)
    return s


def dict_of(s: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(s)


# ----------------------------------------------------------------------------- models

def model_info_to_pb(info: ModelInfo) -> pb.ModelInfo:
    out = pb.ModelInfo(name=info.name, message=info.message, latent_dim=info.latent_dim, source=info.source,
                       fields=[pb.Field(name=f.name, path=f.path, type=f.type, repeated=f.repeated)
                               for f in info.fields])
    if info.geo is not None:
        out.geo.CopyFrom(pb.GeoFields(lat=info.geo.lat, lon=info.geo.lon))
    return out


def model_info_from_pb(m: pb.ModelInfo) -> ModelInfo:
    return ModelInfo(name=m.name, message=m.message, latent_dim=m.latent_dim, source=m.source,
                     fields=[Field(f.name, f.path, f.type, f.repeated) for f in m.fields],
                     geo=GeoFields(m.geo.lat, m.geo.lon) if m.HasField("geo") else None)


def model_detail_to_pb(d: ModelDetail) -> pb.ModelDetail:
    return pb.ModelDetail(info=model_info_to_pb(d.info), proto=d.proto, file_descriptor_set=d.file_descriptor_set,
                          model_config=struct_of(d.model_config), train_config=struct_of(d.train_config),
                          summary=struct_of(d.summary), metrics=struct_of(d.metrics))


def model_detail_from_pb(d: pb.ModelDetail) -> ModelDetail:
    info = model_info_from_pb(d.info)
    return ModelDetail(info.name, info.message, info.fields, info.latent_dim, info.source, info.geo,
                       proto=d.proto, file_descriptor_set=d.file_descriptor_set,
                       model_config=dict_of(d.model_config), train_config=dict_of(d.train_config),
                       summary=dict_of(d.summary), metrics=dict_of(d.metrics))


def latent_to_pb(latent: Latent) -> pb.Latent:
    return pb.Latent(mean=latent.mean, std=latent.std)


def latent_from_pb(latent: pb.Latent) -> Latent:
    return Latent(list(latent.mean), list(latent.std))


# ----------------------------------------------------------------------------- jobs

def job_to_pb(job: Job) -> pb.Job:
    out = pb.Job(id=job.id, name=job.name, state=STATE_TO_PB.get(job.state, pb.JOB_STATE_UNSPECIFIED),
                 step=job.step, steps=job.steps, losses=job.losses, cancel_requested=job.cancel_requested,
                 created_at=job.created_at, started_at=job.started_at or 0.0, finished_at=job.finished_at or 0.0)
    if job.progress:
        known = {f.name for f in pb.JobProgress.DESCRIPTOR.fields}
        out.progress.CopyFrom(pb.JobProgress(**{k: (int(v) if k in ("step", "steps") else v)
                                                for k, v in job.progress.items() if k in known}))
    if job.error:
        out.error.CopyFrom(pb.JobError(code=job.error.code, message=job.error.message))
    return out


def job_from_pb(j: pb.Job) -> Job:
    progress = ({f.name: float(getattr(j.progress, f.name)) for f in j.progress.DESCRIPTOR.fields}
                if j.HasField("progress") else {})
    return Job(id=j.id, name=j.name, state=STATE_FROM_PB.get(j.state, "unknown"), step=j.step, steps=j.steps,
               losses=dict(j.losses), progress=progress,
               error=JobError(j.error.code, j.error.message) if j.HasField("error") else None,
               cancel_requested=j.cancel_requested, created_at=j.created_at,
               started_at=j.started_at or None, finished_at=j.finished_at or None)


# ----------------------------------------------------------------------------- errors

def status_of(error: SynthError, grpc_code_value: int) -> Any:
    """The `google.rpc.Status` for an error (the adapter sends it with `abort_with_status`)."""
    from google.rpc import error_details_pb2, status_pb2

    body = error.to_dict()
    details = body["details"]
    info = error_details_pb2.ErrorInfo(
        reason=body["code"], domain=DOMAIN,
        metadata={k: str(v) for k, v in details.items() if isinstance(v, (str, int, float, bool))})
    packed = [_pack(info)]
    if error.violations:
        packed.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.path, description=v.message)
            for v in error.violations])))
    return status_pb2.Status(code=grpc_code_value, message=body["message"], details=packed)


def error_of_status(blob: bytes | None, message: str, grpc_code: str) -> SynthError:
    """The exception for a failed call, from its rich status (or only its code when there is none)."""
    reason, details, violations = None, {}, []
    if blob:
        try:
            from google.rpc import error_details_pb2, status_pb2
        except ImportError:  # googleapis-common-protos missing: fall back to the gRPC code
            blob = None
        else:
            for any_ in status_pb2.Status.FromString(blob).details:
                if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    any_.Unpack(info)
                    reason, details = info.reason, dict(info.metadata)
                elif any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    any_.Unpack(bad)
                    violations = [Violation(v.field, v.description) for v in bad.field_violations]
    return error_from_wire(reason, message or "", details, grpc_code=grpc_code, violations=violations)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
