"""Service results -> REST bodies. The only place the REST adapter shapes data."""
from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf.message import Message

from synth.records import to_dict
from synth.service import JobStatus, ModelDetail, ModelInfo


def model_out(info: ModelInfo) -> dict[str, Any]:
    return {
        "name": info.name, "message": info.message, "latent_dim": info.latent_dim, "source": info.source,
        "fields": [dataclasses.asdict(f) for f in info.fields],
        "geo": dataclasses.asdict(info.geo) if info.geo else None,
    }


def model_detail_out(d: ModelDetail) -> dict[str, Any]:
    return {
        **model_out(d.info), "proto": d.proto,
        "file_descriptor_set": base64.b64encode(d.file_descriptor_set).decode(),
        "model_config": d.model_config, "train_config": d.train_config,
        "summary": d.summary, "metrics": d.metrics,
    }


def records_out(messages: Iterable[Message]) -> list[dict[str, Any]]:
    return [to_dict(m) for m in messages]


def ndjson_lines(chunks: Iterable[list[Message]]) -> Iterator[bytes]:
    """One JSON record per line; chunk by chunk, so memory stays at one chunk."""
    for chunk in chunks:
        yield "".join(json.dumps(to_dict(m), separators=(",", ":")) + "\n" for m in chunk).encode()


def job_out(s: JobStatus) -> dict[str, Any]:
    return {
        "id": s.id, "name": s.name, "state": s.state, "step": s.step, "steps": s.steps,
        "losses": s.losses, "progress": s.progress, "error": s.error,
        "cancel_requested": s.cancel_requested, "created_at": s.created_at,
        "started_at": s.started_at, "finished_at": s.finished_at,
    }
