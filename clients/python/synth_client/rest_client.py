"""The REST transport (httpx). JSON bodies in the proto3 JSON mapping; NDJSON for streaming."""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

from synth_client.base import SynthClient
from synth_contract.errors import SynthError, Unavailable, error_from_wire
from synth_contract.results import (Interpolation, Job, Latent, ModelDetail, ModelInfo, Record, job_from_json,
                                    model_detail_from_json, model_info_from_json)


class RestClient(SynthClient):
    def __init__(self, url: str, timeout: float = 120.0, token: str | None = None, **httpx_options: Any):
        self.url = url.rstrip("/")
        if token:
            httpx_options["headers"] = {**dict(httpx_options.get("headers") or {}),
                                        "authorization": f"Bearer {token}"}
        self._http = httpx.Client(base_url=self.url, timeout=timeout, **httpx_options)

    def close(self) -> None:
        self._http.close()

    # -- plumbing -----------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as e:
            raise Unavailable(f"{method} {path} timed out: {e}") from e
        except httpx.TransportError as e:
            raise Unavailable(f"cannot reach {self.url}: {e}") from e
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, json=_drop_none(body)).json()

    @staticmethod
    def _model_path(name: str, verb: str = "") -> str:
        return f"/v1/models/{_quote(name)}" + (f":{verb}" if verb else "")

    # -- models ---------------------------------------------------------------------------
    def list_models(self) -> list[ModelInfo]:
        return [model_info_from_json(m) for m in self._request("GET", "/v1/models").json()["models"]]

    def get_model(self, name: str) -> ModelDetail:
        d = self._request("GET", self._model_path(name)).json()
        return model_detail_from_json(d)

    def delete_model(self, name: str) -> ModelInfo:
        return model_info_from_json(self._request("DELETE", self._model_path(name)).json())

    # -- inference ------------------------------------------------------------------------
    def iter_sample(self, model: str, n: int, seed: int | None = None, temperature: float | None = None,
                    where: Mapping[str, Any] | None = None, greedy: bool = False) -> Iterator[Record]:
        body = _drop_none({"n": n, "seed": seed, "temperature": temperature, "greedy": greedy,
                           "where": dict(where) if where else None})
        try:
            with self._http.stream("POST", self._model_path(model, "sample"), json=body,
                                   headers={"accept": "application/x-ndjson"}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if set(item) == {"error"} and isinstance(item["error"], dict):  # in-band error
                        e = item["error"]
                        raise error_from_wire(e.get("code"), e.get("message", ""), e.get("details"))
                    yield item
        except httpx.TransportError as e:
            raise Unavailable(f"stream from {self.url} failed: {e}") from e

    def encode(self, model: str, records: Sequence[Any]) -> list[Latent]:
        out = self._post(self._model_path(model, "encode"), {"records": list(records)})
        return [Latent(l["mean"], l["std"]) for l in out["latents"]]

    def decode(self, model: str, latents: Sequence[Sequence[float]], temperature: float | None = None,
               greedy: bool = False, seed: int | None = None) -> list[Record]:
        body = {"latents": [list(z) for z in latents], "temperature": temperature, "greedy": greedy, "seed": seed}
        return self._post(self._model_path(model, "decode"), body)["records"]

    def interpolate(self, model: str, start: Any, end: Any, steps: int = 8, method: str = "linear") -> Interpolation:
        out = self._post(self._model_path(model, "interpolate"),
                         {"from": start, "to": end, "steps": steps, "method": method})
        return Interpolation(out["records"], out["latents"])

    def reconstruct(self, model: str, records: Sequence[Any]) -> list[Record]:
        return self._post(self._model_path(model, "reconstruct"), {"records": list(records)})["records"]

    # -- jobs -----------------------------------------------------------------------------
    def _create_job(self, proto: str, proto_filename: str, message: str, data: bytes, data_filename: str,
                    config: str | None, name: str | None) -> Job:
        files: dict[str, Any] = {"proto": (proto_filename, proto.encode("utf-8"), "text/plain"),
                                 "data": (data_filename, data, "application/octet-stream")}
        if config is not None:
            files["config"] = ("run.toml", config.encode("utf-8"), "application/toml")
        form = {"message": message, **({"name": name} if name else {})}
        return job_from_json(self._request("POST", "/v1/jobs", data=form, files=files).json())

    def get_job(self, job_id: str) -> Job:
        return job_from_json(self._request("GET", f"/v1/jobs/{_quote(job_id)}").json())

    def cancel_job(self, job_id: str) -> Job:
        return job_from_json(self._request("POST", f"/v1/jobs/{_quote(job_id)}:cancel").json())

    def list_jobs(self) -> list[Job]:
        return [job_from_json(j) for j in self._request("GET", "/v1/jobs").json()["jobs"]]


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def _error(response: httpx.Response) -> SynthError:
    try:
        err = response.json()["error"]
        return error_from_wire(err.get("code"), err.get("message", ""), err.get("details"),
                          http_status=response.status_code)
    except (ValueError, KeyError, TypeError, AttributeError):
        text = response.text[:500] or response.reason_phrase
        return error_from_wire(None, f"HTTP {response.status_code}: {text}", http_status=response.status_code)


