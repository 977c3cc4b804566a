"""This server's limits, stated in its `/openapi.json` (issue 9).

The limits are per server (`synth serve --max-*`), while the request models are
module-level classes, so the numbers are written into the generated document
once, from the same `Limits` object the service enforces: `n`, `steps`,
`temperature`, the list sizes, the string size of `where` values, and the model
name pattern (with the `..` exclusion that pydantic's regex engine cannot say).
A generated client, or schemathesis' `positive_data_acceptance` check, can then
tell an acceptable request from one that will get 413 or 400.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import FastAPI

from synth.service import Limits
from synth.server.rest.schemas import NAME_PATTERN

# The service's NAME_RE, plus "no '..' anywhere" (a look-ahead: fine for ECMA-262 readers of the document).
DOCUMENTED_NAME_PATTERN = r"^(?!.*\.\.)" + NAME_PATTERN.removeprefix("^")
METHODS = ["linear", "slerp"]


def state_limits(app: FastAPI, limits: Limits) -> None:
    """Make `app.openapi()` add `limits` to the document FastAPI generates (once, then cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()  # FastAPI caches it in app.openapi_schema
            _patch(document, limits)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _patch(document: dict[str, Any], limits: Limits) -> None:
    document.setdefault("info", {})["x-protosynth-limits"] = dataclasses.asdict(limits)
    schemas = document.get("components", {}).get("schemas", {})

    def prop(model: str, name: str) -> dict[str, Any]:
        return schemas.get(model, {}).get("properties", {}).get(name, {})

    n = prop("SampleIn", "n")
    n["maximum"] = limits.max_sample
    n["description"] = (f"number of records: at most {limits.max_sample:,}, or {limits.max_sample_stream:,} "
                        "streamed (Accept: application/x-ndjson)")
    prop("MapIn", "n")["maximum"] = limits.max_sample
    for model in ("SampleIn", "DecodeIn", "MapIn"):
        _number_branch(prop(model, "temperature"))["maximum"] = limits.max_temperature
        _where(prop(model, "where"), limits.max_string_bytes)
    steps = prop("InterpolateIn", "steps")
    steps.update(minimum=2, maximum=limits.max_interpolate_steps)
    prop("InterpolateIn", "method")["enum"] = METHODS
    for model, name in (("RecordsIn", "records"), ("DecodeIn", "latents")):
        prop(model, name)["maxItems"] = limits.max_records
    for records in (prop("MapIn", "records"),):
        for branch in records.get("anyOf", [records]):
            if branch.get("type") == "array":
                branch["maxItems"] = limits.max_sample
    for path in document.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter.get("in") == "path" and parameter.get("name") == "name":
                    parameter.setdefault("schema", {})["pattern"] = DOCUMENTED_NAME_PATTERN


def _number_branch(schema: dict[str, Any]) -> dict[str, Any]:
    """`float | None` is `anyOf: [{type: number, ...}, {type: null}]`: the number's own schema."""
    for branch in schema.get("anyOf", []):
        if branch.get("type") == "number":
            return branch
    return schema


def _where(schema: dict[str, Any], max_string_bytes: int) -> None:
    """`where` values: strings of at most `max_string_bytes` (the service counts UTF-8 bytes, and a
    field's own cap may be lower: four times what the model generates for it, see docs/service.md)."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "object":
            branch["additionalProperties"] = {"maxLength": max_string_bytes}
