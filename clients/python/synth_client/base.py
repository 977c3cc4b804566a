"""`SynthClient`: one interface, two transports (like KServe's InferenceRESTClient / GRPCClient).

    client = SynthClient.rest("http://localhost:8000")   # needs httpx
    client = SynthClient.grpc("localhost:50051")         # needs grpcio + protobuf
    client.sample("vermont-address", 5, seed=1)

Both return the same dataclasses and raise the same exceptions (the contract's,
`synth_contract.errors` and `synth_contract.results`, which the server uses too).
Records are dicts in the proto3 JSON mapping. Transports are imported lazily, so
a REST-only install never needs grpcio, and nothing here imports torch. The two
factories are attached by the package (`synth_client/__init__.py`), so this base
class never imports its subclasses.
"""
from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from synth_contract.results import Interpolation, Job, Latent, ModelDetail, ModelInfo, Record


class SynthClient(abc.ABC):
    """`SynthClient.rest(url)` or `SynthClient.grpc(target)` (attached by the package)."""

    rest: Callable[..., "SynthClient"]
    grpc: Callable[..., "SynthClient"]

    # -- models ---------------------------------------------------------------------
    @abc.abstractmethod
    def list_models(self) -> list[ModelInfo]: ...

    @abc.abstractmethod
    def get_model(self, name: str) -> ModelDetail: ...

    @abc.abstractmethod
    def delete_model(self, name: str) -> ModelInfo:
        """Delete a model of the server's models directory (not a bundled one); returns what it was.
        With tokens: the token whose job trained it, or an admin token."""

    # -- inference ------------------------------------------------------------------
    def sample(self, model: str, n: int, seed: int | None = None, temperature: float | None = None,
               where: Mapping[str, Any] | None = None, greedy: bool = False) -> list[Record]:
        """n records; the same seed gives the same records on both transports.

        Both transports stream (NDJSON / a gRPC stream), so n may go up to the
        server's streaming limit (1,000,000 by default).
        """
        return list(self.iter_sample(model, n, seed=seed, temperature=temperature, where=where, greedy=greedy))

    @abc.abstractmethod
    def iter_sample(self, model: str, n: int, seed: int | None = None, temperature: float | None = None,
                    where: Mapping[str, Any] | None = None, greedy: bool = False) -> Iterator[Record]:
        """Stream n records (NDJSON over REST, a server stream over gRPC), for large n."""

    @abc.abstractmethod
    def encode(self, model: str, records: Sequence[Any]) -> list[Latent]: ...

    @abc.abstractmethod
    def decode(self, model: str, latents: Sequence[Sequence[float]], temperature: float | None = None,
               greedy: bool = False, seed: int | None = None) -> list[Record]: ...

    @abc.abstractmethod
    def interpolate(self, model: str, start: Any, end: Any, steps: int = 8,
                    method: str = "linear") -> Interpolation: ...

    @abc.abstractmethod
    def reconstruct(self, model: str, records: Sequence[Any]) -> list[Record]: ...

    # -- jobs -----------------------------------------------------------------------
    def create_job(self, proto: str | Path, message: str, data: bytes | str | Path | Sequence[Mapping[str, Any]],
                   *, data_filename: str | None = None, config: str | Path | Mapping[str, Any] | None = None,
                   name: str | None = None) -> Job:
        """Start training a model on `data`; returns at once (see `wait_job`).

        `proto`: a .proto path, or .proto text. `data`: a file path (the extension names
        the format: .csv, .jsonl, .binpb), raw bytes with `data_filename`, or a list of
        record dicts (sent as JSON Lines). `config`: run.toml text or path, or a dict
        `{"model": {...}, "train": {...}}`.
        """
        proto_text, proto_name = _read_proto(proto)
        payload, filename = _read_data(data, data_filename)
        return self._create_job(proto_text, proto_name, message, payload, filename, _read_config(config), name)

    @abc.abstractmethod
    def _create_job(self, proto: str, proto_filename: str, message: str, data: bytes, data_filename: str,
                    config: str | None, name: str | None) -> Job: ...

    @abc.abstractmethod
    def get_job(self, job_id: str) -> Job: ...

    @abc.abstractmethod
    def cancel_job(self, job_id: str) -> Job: ...

    @abc.abstractmethod
    def list_jobs(self) -> list[Job]:
        """Your jobs, newest first (with an admin token: every job); jobs that a server restart
        interrupted are listed as failed."""

    def wait_job(self, job_id: str, timeout: float | None = None,
                 on_progress: Callable[[Job], None] | None = None, poll_s: float = 0.5) -> Job:
        """Block until the job is finished (any terminal state) and return it.

        Raises TimeoutError after `timeout` seconds. Check `job.succeeded`: a failed
        job is returned, not raised, with its `error`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.done:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout}s")
            time.sleep(poll_s)

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        pass

    def __enter__(self) -> "SynthClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _read_proto(proto: str | Path) -> tuple[str, str]:
    if isinstance(proto, Path) or (isinstance(proto, str) and "\n" not in proto and proto.endswith(".proto")):
        p = Path(proto)
        return p.read_text(encoding="utf-8"), p.name
    return str(proto), "schema.proto"


def _read_data(data: Any, filename: str | None) -> tuple[bytes, str]:
    import json

    if isinstance(data, (bytes, bytearray)):
        if not filename:
            raise ValueError("data_filename is required with raw bytes (its extension names the format)")
        return bytes(data), filename
    if isinstance(data, (str, Path)):
        p = Path(data)
        return p.read_bytes(), filename or p.name
    lines = "".join(json.dumps(dict(r), separators=(",", ":")) + "\n" for r in data)
    return lines.encode("utf-8"), filename or "data.jsonl"


def _read_config(config: Any) -> str | None:
    if config is None:
        return None
    if isinstance(config, Path) or (isinstance(config, str) and "\n" not in config and config.endswith(".toml")):
        return Path(config).read_text(encoding="utf-8")
    if isinstance(config, Mapping):
        return to_toml(config)
    return str(config)


def to_toml(config: Mapping[str, Any]) -> str:
    """Tables of scalars/lists/inline dicts as TOML: enough for `{"model": {...}, "train": {...}}`."""
    import json

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)  # a JSON string is a valid TOML basic string
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{" + ", ".join(f"{json.dumps(str(k))} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    out = []
    for table, body in config.items():
        if not isinstance(body, Mapping):
            raise TypeError(f"config[{table!r}] must be a table (dict)")
        out.append(f"[{table}]")
        out += [f"{k} = {value(v)}" for k, v in body.items() if v is not None]
        out.append("")
    return "\n".join(out)
