"""`/v1/jobs`: train a model from an uploaded schema and data file, watch it, cancel it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile, status
from fastapi.concurrency import run_in_threadpool

from synth.server.rest import convert
from synth.server.rest.deps import ReadCaller, ServiceDep, WriteCaller
from synth.server.rest.models import ERRORS
from synth.server.rest.schemas import ErrorResponse
from synth.service import Job  # the contract's type: one Job shape for REST, gRPC and clients
from synth.errors import SchemaError, Violation
from synth.service import JobRequest

# 429: the job queue is full (ResourceExhausted)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses={**ERRORS, 429: {"model": ErrorResponse}})


@router.post("", response_model=Job, status_code=status.HTTP_202_ACCEPTED)
async def create_job(
    service: ServiceDep,
    caller: WriteCaller,
    proto: Annotated[UploadFile, File(description=".proto file defining the record message")],
    message: Annotated[str, Form(description="record message name (full or short)")],
    data: Annotated[UploadFile, File(description="training data; format by extension: "
                                                 ".csv, .jsonl, .binpb (optionally .gz)")],
    config: Annotated[UploadFile | None, File(description="run.toml with [model] and [train] tables")] = None,
    name: Annotated[str | None, Form(description="model name; default <message>-<job id>")] = None,
) -> dict[str, Any]:
    """Queue a training job; the model is listed and served as soon as the job succeeds."""
    proto_bytes, data_bytes = await proto.read(), await data.read()
    config_text = (await config.read()).decode("utf-8", "replace") if config is not None else None
    try:
        proto_text = proto_bytes.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SchemaError("the .proto upload is not UTF-8 text", [Violation("proto", str(e))]) from e
    request = JobRequest(proto=proto_text, message=message, data=data_bytes,
                         data_filename=data.filename or "data", config=config_text, name=name or None,
                         proto_filename=proto.filename or "schema.proto")
    # Compiling the schema and parsing the data block: keep them off the event loop.
    return convert.job_out(await run_in_threadpool(service.create_job, request, caller))


@dataclass
class JobList:
    jobs: list[Job]  # newest first


@router.get("", response_model=JobList)
def list_jobs(service: ServiceDep, caller: ReadCaller) -> dict[str, Any]:
    """Your jobs, newest first (an admin token: every job), finished ones included up to the server's
    `jobs_kept`; jobs that a server restart interrupted are listed as failed."""
    return {"jobs": [convert.job_out(j) for j in service.list_jobs(caller)]}


@router.get("/{job_id}", response_model=Job)
def get_job(job_id: str, service: ServiceDep, _: ReadCaller) -> dict[str, Any]:
    """State, step, latest losses and progress (records/s, ETA)."""
    return convert.job_out(service.get_job(job_id))


@router.post("/{job_id}:cancel", response_model=Job)
def cancel_job(job_id: str, service: ServiceDep, caller: WriteCaller) -> dict[str, Any]:
    """Ask a job to stop; a queued job is cancelled at once, a running one at its next step.
    Only the token that created the job, or an admin token, may cancel it."""
    return convert.job_out(service.cancel_job(job_id, caller))
