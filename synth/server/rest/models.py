"""`/v1/models`: listing, schema, and the inference operations (sample, encode, decode, ...).

Endpoints are plain `def`: FastAPI runs them in its threadpool, so the blocking
model calls never stall the event loop (fastapi-best-practices, "Async Routes").
The exception is `:sample`'s unary JSON path, which awaits the model thread's future
(`SynthService.sample_future`) instead of holding a threadpool thread while it waits.
"""
from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated, Any

import anyio

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response, StreamingResponse

from synth.server.admission import Admission, client_key
from synth.service import Caller, ModelInfo, SynthService  # ModelInfo: the contract's type
from synth.server.rest import convert
from synth.server.rest.deps import AdmissionDep, ReadCaller, ServiceDep, WriteCaller, read_access
from synth.server.rest.streaming import guarded_lines
from synth.server.rest.schemas import (ModelName, DecodeIn, EncodeOut, ErrorResponse, InterpolateIn, InterpolateOut, ModelDetailOut,
                                 ModelList, RecordsIn, RecordsOut, SampleIn)

NDJSON, CSV = "application/x-ndjson", "text/csv"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 422, 500)
}

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERRORS, dependencies=[Depends(read_access)])


@router.get("", response_model=ModelList)
def list_models(service: ServiceDep) -> dict[str, Any]:
    """Models in the server's models directory and the bundled ones."""
    return {"models": [convert.model_out(m) for m in service.list_models()]}


@router.get("/{name}", response_model=ModelDetailOut, response_model_by_alias=True)
def get_model(name: ModelName, service: ServiceDep) -> dict[str, Any]:
    """Schema (.proto text and message name), training config and summary, evaluation metrics."""
    return convert.model_detail_out(service.get_model(name))


@router.delete("/{name}", response_model=ModelInfo)
def delete_model(name: ModelName, service: ServiceDep, caller: WriteCaller) -> dict[str, Any]:
    """Delete a model of the server's models directory (not a bundled one); returns what it was.
    Needs a token when the server has tokens: the one whose job trained the model, or an admin token."""
    return convert.model_out(service.delete_model(name, caller))


@router.post("/{name}:sample", response_model=RecordsOut, responses={200: {"content": {
    NDJSON: {"schema": {"type": "string"}, "example": '{"city":"Burlington"}\n'},
    CSV: {"schema": {"type": "string"}}}}})
async def sample(name: ModelName, body: SampleIn, service: ServiceDep, admission: AdmissionDep, caller: ReadCaller,
                 request: Request, accept: Annotated[str | None, Header()] = None) -> Any:
    """`n` fake records. `Accept: application/x-ndjson` streams one record per line (up to the
    stream limit; a stream beyond the server's stream bounds is 429); `Accept: text/csv` returns a
    CSV file."""
    wants = (accept or "").lower()
    if NDJSON not in wants and CSV not in wants and not body.where:
        # Unary JSON, the common small request: awaited here, so no threadpool thread waits on the
        # model thread and the records are converted there (docs/service.md, micro-batching).
        future = service.sample_future(name, body.n, seed=body.seed, temperature=body.temperature,
                                       greedy=body.greedy, convert=convert.records_out)
        if future is not None:
            return {"records": await asyncio.wrap_future(future)}
    return await anyio.to_thread.run_sync(
        partial(_sample_blocking, name, body, wants, service, admission, caller, request))


def _sample_blocking(name: str, body: SampleIn, wants: str, service: SynthService, admission: Admission,
                     caller: Caller | None, request: Request) -> Any:
    """Streams, CSV, `where`, a model still to load and more than one chunk: in the threadpool."""
    args = dict(seed=body.seed, temperature=body.temperature, greedy=body.greedy, where=body.where)
    if NDJSON in wants:
        host = request.client.host if request.client else None
        slot = admission.open_stream(client_key(caller.id if caller else None, host),  # 429 before any work
                                     counted=body.n > service.limits.sample_chunk)  # one chunk: like unary
        try:
            # checks the request and makes chunk 0; each chunk's lines are written on the model thread
            lines = service.sample_chunks(name, body.n, convert=convert.ndjson_chunk, **args)
        except BaseException:
            slot.release()
            raise
        return StreamingResponse(guarded_lines(lines, slot), media_type=NDJSON)
    if CSV in wants:
        return Response(service.sample_text(name, body.n, "csv", **args), media_type=f"{CSV}; charset=utf-8")
    return {"records": convert.records_out(service.sample(name, body.n, **args))}


@router.post("/{name}:encode", response_model=EncodeOut)
def encode(name: ModelName, body: RecordsIn, service: ServiceDep) -> dict[str, Any]:
    """Records -> latent mean and standard deviation."""
    return {"latents": [{"mean": l.mean, "std": l.std} for l in service.encode(name, body.records)]}


@router.post("/{name}:decode", response_model=RecordsOut)
def decode(name: ModelName, body: DecodeIn, service: ServiceDep) -> dict[str, Any]:
    """Latent vectors (n x latent_dim) -> records."""
    records = service.decode(name, body.latents, temperature=body.temperature, greedy=body.greedy,
                             seed=body.seed)
    return {"records": convert.records_out(records)}


@router.post("/{name}:interpolate", response_model=InterpolateOut)
def interpolate(name: ModelName, body: InterpolateIn, service: ServiceDep) -> dict[str, Any]:
    """Records along the latent path from `from` to `to` (both ends included)."""
    result = service.interpolate(name, body.from_, body.to, steps=body.steps, method=body.method)
    return {"records": convert.records_out(result.records), "latents": result.latents}


@router.post("/{name}:reconstruct", response_model=RecordsOut)
def reconstruct(name: ModelName, body: RecordsIn, service: ServiceDep) -> dict[str, Any]:
    """decode(encode(record)) for each record (greedy, so deterministic)."""
    return {"records": convert.records_out(service.reconstruct(name, body.records))}
