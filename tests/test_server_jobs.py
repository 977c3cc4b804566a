"""Training jobs over the API: a new schema is uploaded, trained, registered and served at once."""
from __future__ import annotations

import json
import random

import grpc
import httpx
import pytest

from conftest_server import servers  # noqa: F401,F811 - pytest fixtures
from synth_contract._proto import synthesizer_pb2 as pb
from synth_contract._proto import synthesizer_pb2_grpc as pb_grpc

TICKET_PROTO = """syntax = "proto3";
package test.tickets;

message Ticket {
  enum Status {
    STATUS_UNSPECIFIED = 0;
    OPEN = 1;
    CLOSED = 2;
  }
  string title = 1;
  int32 priority = 2;
  Status status = 3;
}
"""
RUN_TOML = """
[model]
latent_dim = 16
char_dim = 8

[train]
steps = 20
batch_size = 16
log_every = 5
eval_every = 20
eval_records = 32
device = "cpu"
"""


def ticket_lines(n: int = 50) -> bytes:
    rng = random.Random(1)
    rows = [{"title": rng.choice(["disk full", "login fails", "slow page", "typo"]),
             "priority": rng.randint(1, 4), "status": rng.choice(["OPEN", "CLOSED"])} for _ in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def upload(servers, *, proto: str = TICKET_PROTO, data: bytes | None = None, filename: str = "tickets.jsonl",
           config: str | None = RUN_TOML, name: str | None = None, message: str = "Ticket") -> httpx.Response:
    files = {"proto": ("ticket.proto", proto.encode()), "data": (filename, ticket_lines() if data is None else data)}
    if config is not None:
        files["config"] = ("run.toml", config.encode())
    form = {"message": message, **({"name": name} if name else {})}
    return httpx.post(servers.http_url + "/v1/jobs", data=form, files=files, timeout=60)


def test_a_job_trains_registers_and_serves_a_new_schema(servers):
    from synth.records import to_message
    from synth.schema.loader import load_schema

    r = upload(servers, name="tickets")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] in ("queued", "running") and job["name"] == "tickets"

    rest, grpc_ = servers.rest(), servers.grpc()
    seen: list[int] = []
    done = rest.wait_job(job["id"], timeout=120, poll_s=0.2, on_progress=lambda j: seen.append(j.step))
    assert done.state == "succeeded", done.error
    assert done.step == 20 and "loss" in done.losses and done.finished_at >= done.started_at
    assert grpc_.get_job(job["id"]) == done

    # listed and servable at once, on both transports, without a restart
    assert "tickets" in [m.name for m in rest.list_models()]
    detail = grpc_.get_model("tickets")
    assert detail.message == "test.tickets.Ticket" and "enum Status" in detail.proto
    assert detail.train_config["steps"] == 20 and detail.summary["job_id"] == job["id"]
    assert "train_loss" in detail.metrics

    cls = load_schema(TICKET_PROTO, "Ticket").message_class
    records = rest.sample("tickets", 25, seed=1)
    assert records == grpc_.sample("tickets", 25, seed=1)
    parsed = [to_message(rec, cls) for rec in records]  # DataError if a record does not fit
    assert all(p.status in (0, 1, 2) for p in parsed)
    blobs = grpc_.sample("tickets", 5, seed=2, binary=True)
    assert all(isinstance(cls.FromString(b), cls) for b in blobs)
    assert all(r["priority"] == 2 for r in rest.sample("tickets", 10, seed=3, where={"priority": 2}))

    with pytest.raises(Exception) as e:  # a finished job cannot be cancelled
        rest.cancel_job(job["id"])
    assert e.value.code == "failed_precondition" and e.value.http_status == 409
    assert upload(servers, name="tickets").status_code == 409  # the name is taken now


def test_watch_and_cancel_over_grpc(servers):
    grpc_ = servers.grpc()
    config = RUN_TOML.replace("steps = 20", "steps = 500").replace("eval_every = 20", "eval_every = 0")
    job = grpc_.create_job(TICKET_PROTO, "Ticket", ticket_lines(), data_filename="t.jsonl", config=config,
                           name="to-cancel")
    assert job.state in ("queued", "running")
    stub = pb_grpc.SynthesizerStub(grpc.insecure_channel(servers.grpc_target))
    stream = stub.WatchJob(pb.WatchJobRequest(id=job.id), timeout=120)
    first = next(stream)
    assert first.id == job.id
    grpc_.cancel_job(job.id)
    states = [first.state] + [u.state for u in stream]  # the stream ends after the terminal state
    assert states[-1] == pb.JOB_STATE_CANCELLED
    final = grpc_.wait_job(job.id, timeout=30)
    assert final.state == "cancelled" and final.cancel_requested and final.step < 500
    assert "to-cancel" not in [m.name for m in grpc_.list_models()]


def _error(r: httpx.Response) -> dict:
    return r.json()["error"]


def test_invalid_proto_upload_is_422_and_invalid_argument(servers):
    broken = TICKET_PROTO.replace("int32 priority = 2;", "int32 priority = 2")
    r = upload(servers, proto=broken)
    assert r.status_code == 422
    err = _error(r)
    assert err["code"] == "invalid_schema"
    assert any("ticket.proto:" in v["path"] for v in err["details"]["violations"]), err  # protoc's file:line

    import synth_client as sc

    with pytest.raises(sc.SchemaError) as e:
        servers.grpc().create_job(broken, "Ticket", ticket_lines(), data_filename="t.jsonl")
    assert e.value.grpc_code == "INVALID_ARGUMENT" and e.value.violations


@pytest.mark.parametrize("kwargs,status,code", [
    (dict(message="Nope"), 422, "invalid_schema"),
    (dict(data=b'{"title": 5}\n'), 422, "invalid_data"),
    (dict(filename="tickets.xlsx"), 422, "invalid_data"),
    (dict(data=b""), 422, "invalid_data"),
    (dict(config="[train]\nstepz = 3\n"), 422, "invalid_config"),
    (dict(config="[train\n"), 422, "invalid_config"),
    (dict(config="[train]\nsteps = 100000000\n"), 413, "too_large"),
    (dict(name="../escape"), 400, "invalid_argument"),
])
def test_bad_job_uploads(servers, kwargs, status, code):
    r = upload(servers, **kwargs)
    assert r.status_code == status, r.text
    assert _error(r)["code"] == code


def test_job_upload_needs_its_parts(servers):
    r = httpx.post(servers.http_url + "/v1/jobs", data={"message": "Ticket"},
                   files={"proto": ("t.proto", TICKET_PROTO.encode())}, timeout=30)
    assert r.status_code == 400 and any(v["path"].endswith("data") for v in _error(r)["details"]["violations"])


def test_a_full_disk_is_507_and_resource_exhausted(servers, monkeypatch):
    """Writing the upload fails with ENOSPC (injected): the client learns the disk is full and may
    retry later (REST 507 insufficient_storage, gRPC RESOURCE_EXHAUSTED), not a 500 bug report."""
    import errno
    import pathlib

    import synth_client as sc

    real = pathlib.Path.write_bytes

    def full(self, data):
        if self.parent.name.startswith("synth-upload-"):  # the job's upload folder
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    before = httpx.get(servers.http_url + "/v1/jobs", timeout=30).json()["jobs"]
    r = upload(servers)
    assert r.status_code == 507, r.text
    assert _error(r)["code"] == "insufficient_storage" and "disk is full" in _error(r)["message"]
    with pytest.raises(sc.InsufficientStorage) as e:
        servers.grpc().create_job(TICKET_PROTO, "Ticket", ticket_lines(), data_filename="t.jsonl", config=RUN_TOML)
    assert e.value.grpc_code == "RESOURCE_EXHAUSTED"
    assert httpx.get(servers.http_url + "/v1/jobs", timeout=30).json()["jobs"] == before  # no job was queued
