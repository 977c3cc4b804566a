"""Fault injection with a real server process (docs/reliability.md): SIGKILL the server mid-job, or
its training worker, and check what a restarted (or surviving) server reports and leaves on disk.

The server is `python -m synth.server` on free loopback ports over a models directory made here;
the worker is its multiprocessing "spawn" child, found through /proc.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest_server import MODEL, ROOT, build_models_dir  # noqa: F401 - also puts the client on sys.path
from test_job_isolation import run_toml
from test_server_jobs import TICKET_PROTO, ticket_lines

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker through /proc")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m synth.server` over `models`, waited for until /healthz answers."""

    def __init__(self, models: Path, log: Path):
        self.http_port, grpc_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "synth.server", "--models", str(models), "--host", "127.0.0.1",
             "--http-port", str(self.http_port), "--grpc-port", str(grpc_port)],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the server did not start; see {log}")
            time.sleep(0.2)

    def get(self, path: str) -> Any:
        r = httpx.get(self.url + path, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def upload(self, config: str, name: str) -> dict[str, Any]:
        files = {"proto": ("ticket.proto", TICKET_PROTO.encode()), "data": ("t.jsonl", ticket_lines()),
                 "config": ("run.toml", config.encode())}
        r = httpx.post(self.url + "/v1/jobs", data={"message": "Ticket", "name": name}, files=files, timeout=60)
        assert r.status_code == 202, r.text
        return r.json()

    def wait_job(self, job_id: str, predicate: Any, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(f"/v1/jobs/{job_id}")
            if predicate(job):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} never reached the expected state: {job}")

    def workers(self) -> list[int]:
        return [pid for pid in children(self.proc.pid) if b"spawn_main" in _cmdline(pid)]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self._log.close()


def children(ppid: int) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == ppid:
                    out.append(int(proc.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """Running (a zombie no container init reaps counts as gone)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in [*models.glob(".job-*"), *models.glob(".deleted-*"),
                                   *(models / ".jobs").glob("synth-upload-*")])


def test_sigkill_of_the_server_mid_job_leaves_nothing_and_the_job_is_reported_failed(tmp_path):
    models = build_models_dir(tmp_path)
    first = ServerProcess(models, tmp_path / "server.log")
    try:
        job = first.upload(run_toml(steps=100_000), name="interrupted")
        first.wait_job(job["id"], lambda j: j["state"] == "running" and j["step"] > 0)
        workers = first.workers()
        assert len(workers) == 1
        # what a crash leaves: the staging folder and the upload, plus a half-written artifact
        assert [n.split("-")[0] for n in leftovers(models)] == [".job", "synth"]
        (models / ".job-0badc0de-x").mkdir()
        (models / ".job-0badc0de-x" / "weights.safetensors").write_bytes(b"half a file")
    finally:
        first.kill(signal.SIGKILL)
    deadline = time.monotonic() + 15  # the worker notices that its server is gone, and exits
    while alive(workers[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(workers[0]), "the training worker outlived its server"

    second = ServerProcess(models, tmp_path / "server.log")
    try:
        assert leftovers(models) == []
        after = second.get(f"/v1/jobs/{job['id']}")
        assert after["state"] == "failed" and after["finished_at"] >= after["started_at"]
        assert after["error"]["code"] == "unavailable"
        assert "interrupted by a server restart" in after["error"]["message"]
        assert [j["id"] for j in second.get("/v1/jobs")["jobs"]] == [job["id"]]
        assert "interrupted" not in [m["name"] for m in second.get("/v1/models")["models"]]
        # the name is free again, and the restarted server trains
        done = second.wait_job(second.upload(run_toml(steps=3), name="interrupted")["id"],
                               lambda j: j["state"] not in ("queued", "running"))
        assert done["state"] == "succeeded", done
        assert "interrupted" in [m["name"] for m in second.get("/v1/models")["models"]]
        assert leftovers(models) == []
    finally:
        second.kill(signal.SIGTERM)


def test_sigkill_of_the_worker_fails_the_job_and_the_server_serves_on(tmp_path):
    models = build_models_dir(tmp_path)
    server = ServerProcess(models, tmp_path / "server.log")
    try:
        job = server.upload(run_toml(steps=100_000), name="worker-killed")
        server.wait_job(job["id"], lambda j: j["state"] == "running" and j["step"] > 0)
        (worker,) = server.workers()
        os.kill(worker, signal.SIGKILL)
        failed = server.wait_job(job["id"], lambda j: j["state"] != "running", timeout=30)
        assert failed["state"] == "failed" and "killed (SIGKILL)" in failed["error"]["message"]
        assert server.proc.poll() is None
        assert server.get("/healthz")["status"] == "ok"
        r = httpx.post(server.url + f"/v1/models/{MODEL}:sample", json={"n": 3, "seed": 1}, timeout=30)
        assert r.status_code == 200 and len(r.json()["records"]) == 3
        assert "worker-killed" not in [m["name"] for m in server.get("/v1/models")["models"]]
        assert leftovers(models) == []
    finally:
        server.kill(signal.SIGTERM)


def test_sigkill_of_the_server_mid_upload_leaves_nothing(tmp_path, monkeypatch):
    """Half a multipart upload is on the wire when the server dies: the restarted server lists no
    job, and neither the models directory nor the server's temporary directory keeps anything."""
    models = build_models_dir(tmp_path)
    tmp = tmp_path / "server-tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))  # where the server's request parser spools uploads
    first = ServerProcess(models, tmp_path / "server.log")
    boundary = "----protosynth-test"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\nTicket\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"proto\"; filename=\"t.proto\"\r\n\r\n"
            f"{TICKET_PROTO}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; "
            f"filename=\"t.jsonl\"\r\n\r\n").encode()
    data = ticket_lines() * 400  # a few MB, so the parser has spooled part of it to disk
    body_size = len(head) + 2 * len(data)  # announce twice what will ever arrive
    try:
        with socket.create_connection(("127.0.0.1", first.http_port)) as conn:
            conn.sendall(f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {body_size}\r\n"
                         f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode())
            conn.sendall(head + data)
            time.sleep(1.0)  # the server reads and spools what has arrived
            first.kill(signal.SIGKILL)
    finally:
        first.kill(signal.SIGKILL)
    second = ServerProcess(models, tmp_path / "server.log")
    try:
        assert second.get("/v1/jobs")["jobs"] == []
        assert leftovers(models) == []
        assert sorted(p.name for p in tmp.iterdir()) == []
    finally:
        second.kill(signal.SIGTERM)
