"""Training jobs that cannot hurt the server (docs/service.md "Jobs", docs/reliability.md).

Real servers on loopback ports over one in-process service with API tokens: settings
above the server's maxima are refused before any data is parsed, the queue is bounded
per client and overall, jobs are listed per token, models can be deleted, and a job
whose worker process is killed, runs past its time limit or cannot write its model
ends FAILED while the server keeps serving. The server-crash tests (a real server
process, SIGKILLed and restarted) are in tests/test_job_crash.py.
"""
from __future__ import annotations

import os
import resource
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from conftest_server import MODEL, build_models_dir, start_http  # noqa: F401 - also puts the client on sys.path
from synth.server.auth import AccessPolicy
from synth.service import Limits, ModelRegistry, SynthService
from synth_contract._proto import synthesizer_pb2 as pb
from synth_contract._proto import synthesizer_pb2_grpc as pb_grpc
from test_server_jobs import TICKET_PROTO, ticket_lines

ALICE, BOB, ADMIN = "alice-token-0123456789abcdef", "bob-token-0123456789abcdef", "admin-token-0123456789abcd"
TOKENS = [(ALICE, False), (BOB, False), (ADMIN, True)]


def run_toml(steps: int = 5, **extra: Any) -> str:
    model = {"latent_dim": 8, "char_dim": 8, **{k[6:]: v for k, v in extra.items() if k.startswith("model_")}}
    train = {"steps": steps, "batch_size": 16, "log_every": 1, "eval_every": 0, "checkpoint_every": 0,
             "device": '"cpu"', "tune": "{ enabled = false }",
             **{k[6:]: v for k, v in extra.items() if k.startswith("train_")}}
    return ("[model]\n" + "".join(f"{k} = {v}\n" for k, v in model.items())
            + "[train]\n" + "".join(f"{k} = {v}\n" for k, v in train.items()))


class Server:
    """A REST app and a gRPC server over one service with tokens, on loopback ports."""

    def __init__(self, root: Path, **limits: Any):
        from synth.server.grpc.server import create_grpc_server
        from synth.server.rest.app import create_app

        self.models_dir = build_models_dir(root)
        base = dict(max_sample=200, max_records=50, max_train_steps=100_000, max_upload_bytes=1 << 20,
                    sample_chunk=16)
        self.service = SynthService(ModelRegistry(self.models_dir, include_bundled=False), Limits(**{**base, **limits}))
        policy = AccessPolicy.from_tokens(TOKENS)
        self.url, self._stop_http = start_http(create_app(self.service, access=policy))
        self._grpc, port = create_grpc_server(self.service, "127.0.0.1:0", max_workers=4, access=policy)
        self._grpc.start()
        self.target = f"127.0.0.1:{port}"

    def client(self, transport: str, token: str | None = ALICE) -> Any:
        from synth_client import SynthClient

        if transport == "rest":
            return SynthClient.rest(self.url, timeout=30, token=token)
        return SynthClient.grpc(self.target, timeout=30, token=token)

    def upload(self, config: str, token: str | None = ALICE, data: bytes | None = None,
               name: str | None = None) -> httpx.Response:
        files = {"proto": ("ticket.proto", TICKET_PROTO.encode()),
                 "data": ("tickets.jsonl", ticket_lines() if data is None else data),
                 "config": ("run.toml", config.encode())}
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.post(self.url + "/v1/jobs", data={"message": "Ticket", **({"name": name} if name else {})},
                          files=files, headers=headers, timeout=60)

    def leftovers(self) -> list[str]:
        """Staging, upload and deleted folders: none may outlive their job."""
        jobs = self.models_dir / ".jobs"
        return sorted(p.name for p in [*self.models_dir.glob(".job-*"), *self.models_dir.glob(".deleted-*"),
                                       *jobs.glob("synth-upload-*")])

    def stop(self) -> None:
        for job in self.service.list_jobs(_admin()):
            if not job.done:
                self.service.cancel_job(job.id, _admin())
        self._stop_http()
        self._grpc.stop(grace=None).wait(5)
        self.service.close()


def _admin() -> Any:
    return AccessPolicy.from_tokens(TOKENS).identify(ADMIN)


def wait_for(predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def worker_pids() -> list[int]:
    """Training processes started by this (test) process: multiprocessing spawn children."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"spawn_main" in cmdline:
            out.append(int(proc.name))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    s = Server(tmp_path_factory.mktemp("isolation"), max_queued_jobs=3, max_queued_jobs_per_client=2)
    yield s
    s.stop()


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- settings maxima

@pytest.mark.parametrize("setting,path", [("train_batch_size = 100000000", "train.batch_size"),
                                          ("model_latent_dim = 1e8", "model.latent_dim"),
                                          ("model_max_string_len = 1e12", "model.max_string_len"),
                                          ("model_n_levels = 100000", "model.n_levels")])
def test_settings_above_the_maxima_are_refused_fast_before_the_data_is_parsed(server, setting, path):
    key, value = (s.strip() for s in setting.split("="))
    config = run_toml(**{key: value})
    before, t0 = _rss_mb(), time.perf_counter()
    r = server.upload(config, data=b"this is not JSON Lines\n")  # never parsed: the settings fail first
    elapsed = time.perf_counter() - t0
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_argument"
    assert [v["path"] for v in error["details"]["violations"]] == [path]
    assert "maximum" in error["details"]["violations"][0]["message"]
    assert elapsed < 1.0 and _rss_mb() - before < 50

    stub = pb_grpc.SynthesizerStub(grpc.insecure_channel(server.target))
    with pytest.raises(grpc.RpcError) as e:
        stub.CreateJob(pb.CreateJobRequest(proto=TICKET_PROTO, message="Ticket", data=b"not data",
                                           data_filename="t.jsonl", config=config),
                       metadata=[("authorization", f"Bearer {ALICE}")], timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and path in e.value.details()


def test_the_maxima_are_server_settings(tmp_path):
    from synth.server.settings import load_settings

    settings = load_settings(max_job_batch_size=8, job_memory_mb=2048, max_queued_jobs_per_client=1)
    limits = settings.limits()
    assert (limits.max_job_batch_size, limits.job_memory_mb, limits.max_queued_jobs_per_client) == (8, 2048, 1)
    s = Server(tmp_path, max_job_batch_size=8, max_job_latent_dim=64)
    try:
        r = s.upload(run_toml())  # batch_size 16
        assert r.status_code == 400 and "train.batch_size" in r.text and "max_job_batch_size" in r.text
        # a default above a lowered maximum is refused too (latent_dim defaults to 128)
        r = s.upload("[train]\nsteps = 5\nbatch_size = 8\n")
        assert r.status_code == 400, r.text
        assert [v["path"] for v in r.json()["error"]["details"]["violations"]] == ["model.latent_dim"]
    finally:
        s.stop()


# ----------------------------------------------------------------------------- queue, list, cancel

@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_the_queue_is_bounded_per_client_and_overall(server, transport):
    from synth_client import ResourceExhausted

    alice, bob, admin = (server.client(transport, t) for t in (ALICE, BOB, ADMIN))
    long = run_toml(steps=100_000)
    running = alice.create_job(TICKET_PROTO, "Ticket", ticket_lines(), data_filename="t.jsonl", config=long)
    wait_for(lambda: alice.get_job(running.id).state == "running", what="the first job to run")
    queued = [alice.create_job(TICKET_PROTO, "Ticket", ticket_lines(), data_filename="t.jsonl", config=long)
              for _ in range(2)]
    assert [j.state for j in queued] == ["queued", "queued"]
    with pytest.raises(ResourceExhausted) as e:  # alice's third waiting job: her quota (2) is used up
        alice.create_job(TICKET_PROTO, "Ticket", ticket_lines(), data_filename="t.jsonl", config=long)
    assert e.value.code == "resource_exhausted" and "per client is 2" in e.value.message
    assert (e.value.http_status, e.value.grpc_code) in ((429, None), (None, "RESOURCE_EXHAUSTED"))
    queued.append(bob.create_job(TICKET_PROTO, "Ticket", ticket_lines(), data_filename="t.jsonl", config=long))
    with pytest.raises(ResourceExhausted) as e:  # the whole queue (3) is full, whoever asks
        admin.create_job(TICKET_PROTO, "Ticket", ticket_lines(), data_filename="t.jsonl", config=long)
    assert "queue is full" in e.value.message
    assert len(list((server.models_dir / ".jobs").glob("synth-upload-*"))) == 4  # on disk while queued

    # each token sees its own jobs, newest first; an admin sees all of them
    alices, bobs = [j.id for j in alice.list_jobs()], [j.id for j in bob.list_jobs()]
    assert alices[:3] == [queued[1].id, queued[0].id, running.id] and queued[2].id not in alices
    assert bobs[0] == queued[2].id and running.id not in bobs
    assert {running.id, *(j.id for j in queued)} <= {j.id for j in admin.list_jobs()}

    for job in (*queued[:2], running):
        alice.cancel_job(job.id)
    bob.cancel_job(queued[2].id)
    for job in (running, *queued):
        assert wait_for(lambda: alice.get_job(job.id).done and alice.get_job(job.id), what="cancel").state \
            == "cancelled"
    wait_for(lambda: not server.leftovers(), what="uploads and staging to be removed")
    wait_for(lambda: not worker_pids(), what="the worker to exit")
    for c in (alice, bob, admin):
        c.close()


def test_listing_jobs_needs_a_token_and_anonymous_callers_share_a_quota(tmp_path):
    from synth_client import ResourceExhausted, Unauthenticated

    s = Server(tmp_path, max_queued_jobs_per_client=1)
    try:
        for transport in ("rest", "grpc"):
            with s.client(transport, None) as anonymous, pytest.raises(Unauthenticated):
                anonymous.list_jobs()
            with s.client(transport, "wrong-token-0123456789") as wrong, pytest.raises(Unauthenticated):
                wrong.list_jobs()
        assert httpx.get(s.url + "/v1/jobs", timeout=30).status_code == 401
    finally:
        s.stop()
    # a server without tokens: every caller is "anonymous", one identity with one quota
    from synth.service import JobRequest

    service = SynthService(ModelRegistry(tmp_path / "open", include_bundled=False),
                           Limits(max_queued_jobs_per_client=1))
    try:
        request = JobRequest(TICKET_PROTO, "Ticket", ticket_lines(), "t.jsonl", run_toml(steps=100_000))
        first = service.create_job(request)
        wait_for(lambda: service.get_job(first.id).state == "running", what="the first job to run")
        service.create_job(request)
        with pytest.raises(ResourceExhausted, match="anonymous callers have 1 jobs waiting"):
            service.create_job(request)
        assert len(service.list_jobs()) == 2
    finally:
        service.close()
    assert service.get_job(first.id).state == "failed" and "shut down" in service.get_job(first.id).error.message


# ----------------------------------------------------------------------------- delete models

@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_deleting_a_model(server, transport):
    from synth_client import NotFound, PermissionDenied, Unauthenticated

    name = f"deleteme-{transport}"
    with server.client(transport, ALICE) as alice, server.client(transport, BOB) as bob, \
            server.client(transport, None) as anonymous:
        job = alice.create_job(TICKET_PROTO, "Ticket", ticket_lines(), data_filename="t.jsonl",
                               config=run_toml(steps=3), name=name)
        assert alice.wait_job(job.id, timeout=120).state == "succeeded"
        assert name in [m.name for m in alice.list_models()]
        with pytest.raises(Unauthenticated):
            anonymous.delete_model(name)
        with pytest.raises(PermissionDenied):  # bob's token did not train it
            bob.delete_model(name)
        with pytest.raises(PermissionDenied):  # a model copied into the directory: admins only
            alice.delete_model(MODEL)
        info = alice.delete_model(name)
        assert info.name == name and info.message == "test.tickets.Ticket"
        assert name not in [m.name for m in alice.list_models()]
        with pytest.raises(NotFound):
            alice.delete_model(name)
        with pytest.raises(NotFound):
            alice.sample(name, 1)
    assert not (server.models_dir / name).exists() and not server.leftovers()
    r = httpx.delete(server.url + "/v1/models/nope", headers={"authorization": f"Bearer {ADMIN}"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


# ----------------------------------------------------------------------------- faults in the worker

def test_killing_the_worker_fails_the_job_and_the_server_keeps_serving(server):
    with server.client("grpc", ALICE) as c:
        job = c.create_job(TICKET_PROTO, "Ticket", ticket_lines(), data_filename="t.jsonl",
                           config=run_toml(steps=100_000), name="killed")
        wait_for(lambda: c.get_job(job.id).step > 0, what="the job to train")
        pids = worker_pids()
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
        final = c.wait_job(job.id, timeout=30)
        assert final.state == "failed" and final.error.code == "internal"
        assert "killed (SIGKILL)" in final.error.message and "server is unaffected" in final.error.message
        assert len(c.sample(MODEL, 5, seed=1)) == 5  # the server serves on
        assert "killed" not in [m.name for m in c.list_models()]
    assert httpx.get(server.url + "/healthz", timeout=30).status_code == 200
    assert not server.leftovers()


def test_a_job_past_its_time_limit_is_stopped_and_fails(tmp_path):
    s = Server(tmp_path, job_timeout_s=6.0)
    try:
        with s.client("rest", ALICE) as c:
            job = c.create_job(TICKET_PROTO, "Ticket", ticket_lines(), data_filename="t.jsonl",
                               config=run_toml(steps=100_000))
            final = c.wait_job(job.id, timeout=60, poll_s=0.2)
            assert final.state == "failed" and final.error.code == "resource_exhausted"
            assert "time limit of 6 s" in final.error.message
            assert 5.5 < final.finished_at - final.started_at < 15
        assert not s.leftovers() and not worker_pids()
    finally:
        s.stop()


def test_a_job_over_its_memory_limit_fails_with_a_clear_message(tmp_path):
    s = Server(tmp_path, job_memory_mb=1000)  # torch alone maps ~600 MB
    try:
        with s.client("rest", ALICE) as c:
            config = run_toml(steps=50, model_latent_dim=1024, train_batch_size=4096)
            final = c.wait_job(c.create_job(TICKET_PROTO, "Ticket", ticket_lines(), data_filename="t.jsonl",
                                            config=config).id, timeout=120)
            assert final.state == "failed" and final.error.code == "resource_exhausted"
            assert "memory" in final.error.message and "1000 MB" in final.error.message
            assert len(c.sample(MODEL, 2)) == 2
    finally:
        s.stop()


ENOSPC_ON_SAVE = textwrap.dedent('''
    """Test fault injection: the disk is full when safetensors writes a model's weights."""
    import errno
    import importlib.abc
    import importlib.util
    import sys


    class _FullDisk(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != "safetensors.torch":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)

                def save_file(*args, **kwargs):
                    raise OSError(errno.ENOSPC, "No space left on device")

                module.save_file = save_file

            spec.loader.exec_module = exec_module
            return spec


    sys.meta_path.insert(0, _FullDisk())
''')


def test_a_full_disk_while_saving_fails_the_job_and_publishes_nothing(tmp_path, monkeypatch):
    """The worker's store write path raises ENOSPC (a `sitecustomize` on the worker's PYTHONPATH:
    the server's code is unchanged); the job fails with a clear message, nothing is published."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(ENOSPC_ON_SAVE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(inject), os.environ.get("PYTHONPATH", "")]))
    s = Server(tmp_path / "server")
    try:
        with s.client("grpc", ALICE) as c:
            job = c.create_job(TICKET_PROTO, "Ticket", ticket_lines(), data_filename="t.jsonl",
                               config=run_toml(steps=3), name="full-disk")
            final = c.wait_job(job.id, timeout=120)
            assert final.state == "failed" and final.error.code == "resource_exhausted", final.error
            assert "No space left on device" in final.error.message and "nothing was published" in final.error.message
            assert "full-disk" not in [m.name for m in c.list_models()]
        assert not (s.models_dir / "full-disk").exists() and not s.leftovers()
    finally:
        s.stop()


# ----------------------------------------------------------------------------- the CLI

def test_the_cli_lists_jobs_and_deletes_models(server, capsys):
    import json

    from synth.cli import main

    with server.client("rest", ALICE) as c:
        job = c.create_job(TICKET_PROTO, "Ticket", ticket_lines(), data_filename="t.jsonl",
                           config=run_toml(steps=3), name="cli-model")
        assert c.wait_job(job.id, timeout=120).state == "succeeded"
        capsys.readouterr()
        assert main(["jobs", "--server", server.url, "--token", ALICE, "--json"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert rows[0]["id"] == job.id and rows[0]["state"] == "succeeded"
        assert main(["jobs", "--server", server.target, "--token", BOB]) == 0
        assert job.id not in capsys.readouterr().out  # bob sees only his own jobs
        assert main(["delete", "cli-model", "--server", server.target, "--token", BOB]) == 2  # not his model: PermissionDenied
        assert "cli-model" in [m.name for m in c.list_models()]
        assert main(["delete", "cli-model", "--server", server.target, "--token", ALICE]) == 0
        assert "deleted cli-model" in capsys.readouterr().err
        assert "cli-model" not in [m.name for m in c.list_models()]
