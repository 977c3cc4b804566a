"""Availability under load (issue 9): stream bounds, reserved health capacity, deadlines, cancellation.

Real servers on loopback ports over the tiny `places` model (tests/conftest_server.py),
with their own `Admission` (synth/server/admission.py) so that the bounds are small.
Where a test must see what the server *does* after a client leaves (no more chunks
made), the service is wrapped in a recorder that notes when each chunk is produced
and when its generator is closed; everything else goes through the wire.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest_server import MODEL, build_models_dir, place_records, start_http  # noqa: F401 - client on sys.path
from synth.server.admission import Admission
from synth_contract._proto import synthesizer_pb2 as pb
from synth_contract._proto import synthesizer_pb2_grpc as pb_grpc

LONG = 1_000_000  # records: a stream that would run for minutes unless stopped


class Recorder:
    """The real service, with the chunks its sample generators make (and their closing) timed."""

    def __init__(self, real: Any, slow_encode_s: float = 0.0):
        self.real, self.slow_encode_s = real, slow_encode_s
        self.chunk_times: list[float] = []
        self.closed_at: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def sample_chunks(self, *args: Any, **kwargs: Any) -> Iterator[list[Any]]:
        chunks = self.real.sample_chunks(*args, **kwargs)

        def timed() -> Iterator[list[Any]]:
            try:
                for chunk in chunks:
                    self.chunk_times.append(time.monotonic())
                    yield chunk
            finally:
                self.closed_at.append(time.monotonic())

        return timed()

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self.slow_encode_s)  # a model call that outlives the deadline
        return self.real.encode(*args, **kwargs)


class Pair:
    """REST app and gRPC server over one service and one Admission, as `synth serve` builds them."""

    def __init__(self, service: Any, admission: Admission, max_workers: int = 24, reserved: int = 4):
        from synth.server.grpc.server import create_grpc_server
        from synth.server.rest.app import create_app

        self.service, self.admission = service, admission
        self.http_url, self._stop_http = start_http(create_app(service, admission=admission))
        self._grpc, port = create_grpc_server(service, "127.0.0.1:0", max_workers=max_workers,
                                              admission=admission, reserved_workers=reserved)
        self._grpc.start()
        self.target = f"127.0.0.1:{port}"
        # No BDP probing: the receive window stays at 64 KB, so an unread stream blocks the server's
        # thread on flow control after a few chunks instead of generating megabytes ahead.
        self.channel = grpc.insecure_channel(self.target, options=[("grpc.http2.bdp_probe", 0)])
        self.stub = pb_grpc.SynthesizerStub(self.channel)

    def stop(self) -> None:
        self.channel.close()
        self._stop_http()
        self._grpc.stop(grace=None).wait(5)


@pytest.fixture(scope="module")
def base_service(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from synth.service import Limits, ModelRegistry, SynthService

    limits = Limits(max_sample=2000, max_records=500, sample_chunk=16)
    service = SynthService(ModelRegistry(build_models_dir(tmp_path_factory.mktemp("avail")), include_bundled=False),
                           limits)
    service.preload(MODEL)
    yield service
    service.close()


@pytest.fixture
def make_pair(base_service: Any) -> Any:
    pairs: list[Pair] = []

    def make(admission: Admission, **kwargs: Any) -> Pair:
        service = kwargs.pop("service", None) or base_service
        pair = Pair(service, admission, **kwargs)
        pairs.append(pair)
        return pair

    yield make
    for pair in pairs:
        pair.stop()


def _open_grpc_streams(pair: Pair, count: int) -> list[Any]:
    """`count` long Sample streams, each past its first message (so it holds a worker), then unread:
    the server blocks on flow control, holding the thread without using the CPU."""
    streams = []
    for i in range(count):
        stream = pair.stub.Sample(pb.SampleRequest(model=MODEL, n=LONG, seed=i), timeout=120)
        next(stream)
        streams.append(stream)
    return streams


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------- availability

def test_health_and_listing_answer_while_16_streams_hold_their_workers(make_pair):
    # 24 workers, 4 reserved, 16 stream slots: before the fix 16 streams on 16 workers left health and
    # ListModels queued until they timed out.
    pair = make_pair(Admission(max_streams=16, max_streams_per_client=16), max_workers=24, reserved=4)
    health = health_pb2_grpc.HealthStub(pair.channel)
    assert httpx.get(pair.http_url + "/healthz", timeout=5).status_code == 200  # first-call costs paid here
    streams = _open_grpc_streams(pair, 16)
    try:
        grpc_took, rest_took = [], []
        for _ in range(7):  # timeout=1: before the fix these waited until their deadline
            reply, took = _timed(lambda: health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            grpc_took.append(took)
            r, took = _timed(lambda: httpx.get(pair.http_url + "/healthz", timeout=1))
            assert r.status_code == 200 and r.json()["status"] == "ok"
            rest_took.append(took)
        # "well under a second" on a shared 2-core machine: the median, and every call within the second
        for took in (grpc_took, rest_took):
            assert sorted(took)[len(took) // 2] < 0.5 and max(took) < 1.0, took
        listing = pair.stub.ListModels(pb.ListModelsRequest(), timeout=1)
        assert [m.name for m in listing.models] == [MODEL]

        # A 17th stream is refused at once, on both transports, with "retry later".
        with pytest.raises(grpc.RpcError) as e:
            next(pair.stub.Sample(pb.SampleRequest(model=MODEL, n=LONG), timeout=5))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        r = httpx.post(f"{pair.http_url}/v1/models/{MODEL}:sample", json={"n": LONG},
                       headers={"accept": "application/x-ndjson"}, timeout=5)
        assert r.status_code == 429 and r.json()["error"]["code"] == "resource_exhausted"
        assert r.headers["retry-after"] == "1"
        assert pair.admission.streams == 16
    finally:
        for stream in streams:
            stream.cancel()
    deadline = time.monotonic() + 5  # cancelled streams give their slots back
    while pair.admission.streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pair.admission.streams == 0
    assert len(list(pair.stub.Sample(pb.SampleRequest(model=MODEL, n=20), timeout=10))) == 2


def test_unary_calls_beyond_the_worker_capacity_are_refused_not_queued(make_pair):
    # 6 workers, 2 reserved: 4 may run Synthesizer calls; the streams below hold all 4.
    pair = make_pair(Admission(max_streams=10, max_streams_per_client=10), max_workers=6, reserved=2)
    streams = _open_grpc_streams(pair, 4)
    try:
        with pytest.raises(grpc.RpcError) as e:
            pair.stub.ListModels(pb.ListModelsRequest(), timeout=2)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reply = health_pb2_grpc.HealthStub(pair.channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        for stream in streams:
            stream.cancel()


def test_streams_per_client_are_bounded(make_pair):
    from synth.server.auth import AccessPolicy

    pair = make_pair(Admission(max_streams=10, max_streams_per_client=2))
    streams = _open_grpc_streams(pair, 2)
    try:
        with pytest.raises(grpc.RpcError) as e:
            next(pair.stub.Sample(pb.SampleRequest(model=MODEL, n=LONG), timeout=5))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "this client" in e.value.details()
    finally:
        for stream in streams:
            stream.cancel()
    # With API tokens a client is its token: one token's streams do not count against another's.
    admission = Admission(max_streams=10, max_streams_per_client=1)
    alice, bob = "alice-token-0123456789abcdef", "bob-token-0123456789abcdef"
    from synth.server.rest.app import create_app

    url, stop = start_http(create_app(pair.service, access=AccessPolicy.from_tokens([(alice, False), (bob, False)]),
                                      admission=admission))
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            body, ndjson = {"n": LONG, "seed": 1}, "application/x-ndjson"
            with http.stream("POST", f"/v1/models/{MODEL}:sample", json=body,
                             headers={"accept": ndjson, "authorization": f"Bearer {alice}"}) as first:
                assert first.status_code == 200
                again = http.post(f"/v1/models/{MODEL}:sample", json=body,
                                  headers={"accept": ndjson, "authorization": f"Bearer {alice}"})
                assert again.status_code == 429
                with http.stream("POST", f"/v1/models/{MODEL}:sample", json=body,
                                 headers={"accept": ndjson, "authorization": f"Bearer {bob}"}) as other:
                    assert other.status_code == 200
    finally:
        stop()


# ----------------------------------------------------------------------------- cancellation

@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_client_that_goes_away_stops_its_stream_within_a_second(make_pair, base_service, transport):
    recorder = Recorder(base_service)
    pair = make_pair(Admission(), service=recorder)
    if transport == "rest":
        with httpx.Client(timeout=30) as http:
            with http.stream("POST", f"{pair.http_url}/v1/models/{MODEL}:sample", json={"n": LONG, "seed": 1},
                             headers={"accept": "application/x-ndjson"}) as r:
                lines = r.iter_lines()
                assert json.loads(next(lines))  # the stream runs
                for _ in range(40):
                    next(lines)
            gone = time.monotonic()  # leaving the block closed the connection
    else:
        stream = pair.stub.Sample(pb.SampleRequest(model=MODEL, n=LONG, seed=1), timeout=60)
        for _ in range(3):
            next(stream)
        stream.cancel()
        gone = time.monotonic()
    time.sleep(1.5)
    assert recorder.closed_at and recorder.closed_at[0] - gone < 1.0  # the service's generator was closed
    assert max(recorder.chunk_times) - gone < 1.0  # and no chunk was made after that
    made = len(recorder.chunk_times)
    assert made < LONG // base_service.limits.sample_chunk
    time.sleep(0.5)
    assert len(recorder.chunk_times) == made
    assert pair.admission.streams == 0  # the slot was given back


# ----------------------------------------------------------------------------- deadlines

def test_streams_end_at_their_deadline_on_both_transports(make_pair):
    pair = make_pair(Admission(stream_timeout=1.0))
    t0 = time.monotonic()
    r = httpx.post(f"{pair.http_url}/v1/models/{MODEL}:sample", json={"n": LONG, "seed": 1},
                   headers={"accept": "application/x-ndjson"}, timeout=30)
    took = time.monotonic() - t0
    last = json.loads(r.text.splitlines()[-1])
    assert r.status_code == 200 and last["error"]["code"] == "deadline_exceeded" and took < 5, took
    assert len(r.text.splitlines()) > 2  # records came before the deadline

    received = 0
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        for message in pair.stub.Sample(pb.SampleRequest(model=MODEL, n=LONG, seed=1), timeout=30):
            received += len(message.records)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and received > 0
    assert time.monotonic() - t0 < 5


def test_unary_requests_have_a_server_side_deadline(make_pair, base_service):
    from synth_client import DeadlineExceeded, SynthClient

    pair = make_pair(Admission(request_timeout=0.5), service=Recorder(base_service, slow_encode_s=2.0))
    records = place_records(2)
    t0 = time.monotonic()
    r = httpx.post(f"{pair.http_url}/v1/models/{MODEL}:encode", json={"records": records}, timeout=30)
    assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
    assert time.monotonic() - t0 < 1.5  # answered at the deadline, not when the work ended
    with SynthClient.grpc(pair.target, timeout=30) as c:
        with pytest.raises(DeadlineExceeded):  # the late result is disowned, not sent
            c.encode(MODEL, records)
    with SynthClient.rest(pair.http_url, timeout=30) as c:  # quick calls are untouched
        assert len(c.sample(MODEL, 3, seed=1)) == 3


# ----------------------------------------------------------------------------- graceful shutdown

def _serve(models: Any, *flags: str) -> tuple[Any, str, str, list[str]]:
    """`python -m synth.server` on free ports; (process, REST url, gRPC target, its output) once it is ready."""
    import os
    import re
    import subprocess
    import sys

    from conftest_server import ROOT

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "synth.server", "--models", str(models), "--http-port", "0",
                             "--grpc-port", "0", "--device", "cpu", *flags], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    banner: list[str] = []
    ready = threading.Event()

    def read() -> None:  # keep draining the pipe, so the server never blocks on a full one
        for line in proc.stdout:
            banner.append(line)
            if "Ctrl-C to stop" in line:
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(90) or proc.poll() is not None:
        proc.kill()
        pytest.fail("the server did not start:\n" + "".join(banner))
    text = "".join(banner)
    url = re.search(r"REST\s+(http://\S+)/v1/models", text).group(1)
    target = re.search(r"gRPC\s+(\S+:\d+)", text).group(1)
    return proc, url, target, banner


def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_in_the_grace_period(tmp_path):
    import signal

    grace = 8.0
    proc, url, target, output = _serve(build_models_dir(tmp_path), "--shutdown-grace", str(grace),
                                       "--max-sample", "40000")
    results: dict[str, Any] = {}
    channel = grpc.insecure_channel(target)
    stub = pb_grpc.SynthesizerStub(channel)
    try:
        def unary() -> None:  # a few seconds of real work, in flight when SIGTERM arrives
            r = httpx.post(f"{url}/v1/models/{MODEL}:sample", json={"n": 40_000, "seed": 1}, timeout=60)
            count = len(r.json()["records"]) if r.status_code == 200 else r.text[:500]
            results["unary"] = (r.status_code, count, time.monotonic())

        def rest_stream() -> None:
            r = httpx.post(f"{url}/v1/models/{MODEL}:sample", json={"n": LONG, "seed": 2},
                           headers={"accept": "application/x-ndjson"}, timeout=60)
            results["rest_stream"] = r.text.splitlines()

        def grpc_stream() -> None:
            try:
                for _ in stub.Sample(pb.SampleRequest(model=MODEL, n=LONG, seed=3), timeout=60):
                    pass
            except grpc.RpcError as e:
                results["grpc_stream"] = e.code()

        workers = [threading.Thread(target=f) for f in (unary, rest_stream, grpc_stream)]
        for w in workers:
            w.start()
        time.sleep(1.0)
        assert "unary" not in results  # still in flight
        terminated = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        with pytest.raises(httpx.TransportError):  # new work is refused
            httpx.get(f"{url}/healthz", timeout=2)
        with pytest.raises(grpc.RpcError) as e:
            stub.ListModels(pb.ListModelsRequest(), timeout=2)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        for w in workers:
            w.join(30)
        assert proc.wait(timeout=30) == 0, "".join(output)
        exited = time.monotonic()
        status, count, finished = results["unary"]
        assert (status, count) == (200, 40_000), "".join(output)
        assert finished > terminated  # it completed after SIGTERM
        last = json.loads(results["rest_stream"][-1])
        assert last["error"]["code"] == "unavailable" and len(results["rest_stream"]) > 1  # ended cleanly
        assert results["grpc_stream"] == grpc.StatusCode.UNAVAILABLE
        assert exited - terminated < grace, exited - terminated
    finally:
        channel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
