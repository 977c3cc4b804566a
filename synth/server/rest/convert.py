"""Service results -> REST bodies. The only place the REST adapter shapes data.

Models and jobs are written by the contract's `to_json`, which the REST client
reads back with the contract's `*_from_json`: one JSON shape, declared once.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from google.protobuf.message import Message

from synth.service import to_dict
from synth.service import Job, ModelDetail, ModelInfo
from synth_contract.results import to_json


def model_out(info: ModelInfo) -> dict[str, Any]:
    return to_json(info.info if isinstance(info, ModelDetail) else info)


def model_detail_out(d: ModelDetail) -> dict[str, Any]:
    return to_json(d)


def records_out(messages: Iterable[Message]) -> list[dict[str, Any]]:
    return [to_dict(m) for m in messages]


def ndjson_chunk(chunk: list[Message]) -> bytes:
    """A chunk of records as NDJSON: one JSON record per line."""
    return "".join(json.dumps(to_dict(m), separators=(",", ":")) + "\n" for m in chunk).encode()


def job_out(job: Job) -> dict[str, Any]:
    return to_json(job)
