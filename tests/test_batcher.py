"""Micro-batching (synth/service/batcher.py): merged sample requests give the records they get alone.

The equality is checked byte for byte on serialized records, for the bundled model (mixture
prior, Gaussian coordinates, re-encoded feedback, categorical and string leaves) and the
tiny server fixture model (latent 16: widths where vectorised kernels leave a scalar tail),
at the model, the service and the HTTP API. Without the row-invariant kernels
(synth/nn/rowwise.py) these tests fail: every merged request differs in its coordinates.
"""
from __future__ import annotations

import json
import threading
import urllib.request

import pytest
import torch

from conftest_server import PLACE_PROTO, build_models_dir, place_records, start_http
from synth import store
from synth.errors import InvalidArgument
from synth.model import EXACT_ROWS, Model
from synth.model_config import ModelConfig
from synth.records import to_dict
from synth.server.settings import load_settings
from synth.service import ModelRegistry, SynthService
from synth.service.batcher import BatchConfig, ModelWorker

REQUESTS = [(1, 11), (3, 12), (1, 13), (EXACT_ROWS, 14), (2, 15), (1, 11)]  # the same request twice, too


@pytest.fixture(scope="module")
def bundled() -> Model:
    return store.load(store.bundled_models()["vermont-address"])


@pytest.fixture(scope="module")
def places() -> Model:
    torch.manual_seed(0)
    return Model.create(PLACE_PROTO, "Place", records=place_records(), config=ModelConfig(latent_dim=16, char_dim=8))


def wire(records) -> list[bytes]:
    return [r.SerializeToString() for r in records]


@pytest.mark.parametrize("name", ["bundled", "places"])
def test_merged_requests_equal_alone(name, request):
    model = request.getfixturevalue(name)
    alone = [wire(model.sample(n, seed=s)) for n, s in REQUESTS]
    merged = [wire(r) for r in model.sample_many(REQUESTS)]
    assert merged == alone
    reordered = [wire(r) for r in model.sample_many(REQUESTS[::-1])][::-1]
    assert reordered == alone
    assert alone[0] == alone[-1] and alone[0] != alone[2]  # seeds matter, and only seeds


def test_sample_many_refuses_big_requests(places):
    from synth.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        places.sample_many([(EXACT_ROWS + 1, 0)])
    assert places.sample_many([(0, 1), (2, 2)])[0] == []


def concurrently(fn, args: list) -> list:
    out: list = [None] * len(args)
    start = threading.Barrier(len(args))

    def run(i: int) -> None:
        start.wait()
        out[i] = fn(*args[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_service_merges_concurrent_requests_and_keeps_seeds(bundled, tmp_path):
    service = SynthService(ModelRegistry(tmp_path), batching=BatchConfig(window_ms=200, max_rows=64))
    try:
        model = service.registry.model("vermont-address")
        got = concurrently(lambda n, s: wire(service.sample("vermont-address", n, seed=s)), REQUESTS)
        assert service.worker.merged >= 2  # some requests really ran together
        assert got == [wire(model.sample(n, seed=s)) for n, s in REQUESTS]
    finally:
        service.close()


def test_sample_future_never_blocks_and_gives_the_records_of_sample(tmp_path):
    """The async REST path's call: None until the model is loaded (or for more than one chunk),
    then a future of the same records as `sample`, converted on the model thread."""
    service = SynthService(ModelRegistry(tmp_path))
    try:
        assert service.sample_future("vermont-address", 3, seed=5) is None  # not loaded: nothing read
        assert service.registry.loaded("vermont-address") is None
        want = wire(service.sample("vermont-address", 3, seed=5))  # loads it
        future = service.sample_future("vermont-address", 3, seed=5, convert=wire)
        assert future is not None and future.result() == want
        assert service.sample_future("vermont-address", service.limits.sample_chunk + 1, seed=5) is None
        with pytest.raises(InvalidArgument):
            service.sample_future("vermont-address", 3, temperature=-1.0)
    finally:
        service.close()


def test_worker_respects_the_row_cap_and_runs_other_calls(places):
    worker = ModelWorker(BatchConfig(window_ms=200, max_rows=4))
    try:
        got = concurrently(lambda n, s: wire(worker.sample(places, n, s)), [(2, 1), (2, 2), (2, 3), (3, 4)])
        assert got == [wire(places.sample(n, seed=s)) for n, s in [(2, 1), (2, 2), (2, 3), (3, 4)]]
        assert worker.calls >= 3  # 9 rows cannot fit in calls of at most 4
        assert worker.call(lambda: 41 + 1) == 42
        with pytest.raises(ZeroDivisionError):
            worker.call(lambda: 1 / 0)
    finally:
        worker.close()


def test_then_runs_on_the_model_thread_for_merged_and_plain_requests(places):
    """Streams convert their chunks with `then` where the chunks are made: on the model thread."""
    worker = ModelWorker(BatchConfig(window_ms=200, max_rows=64))

    def then(records):
        return threading.current_thread().name, wire(records)

    try:
        requests = [(2, 1), (3, 2), (EXACT_ROWS + 5, 3)]  # two that merge, one too big to merge
        got = concurrently(lambda n, s: worker.sample_future(places, n, s, then=then).result(), requests)
        assert got == [("synth-model", wire(places.sample(n, seed=s))) for n, s in requests]
        assert worker.merged >= 2
        failing = worker.sample_future(places, 1, 9, then=lambda records: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            failing.result()
    finally:
        worker.close()


def test_rest_api_gives_the_same_records_under_concurrency(tmp_path):
    from synth.server.rest.app import create_app

    models = build_models_dir(tmp_path)
    service = SynthService(ModelRegistry(models, include_bundled=False), batching=BatchConfig(window_ms=100))
    url, stop = start_http(create_app(service))
    try:
        def post(n: int, seed: int) -> list:
            req = urllib.request.Request(f"{url}/v1/models/places:sample", json.dumps({"n": n, "seed": seed}).encode(),
                                         {"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())["records"]

        args = [(1, 100 + i) for i in range(8)] + [(5, 7), (5, 7)]
        together = concurrently(post, args)
        assert service.worker.merged >= 2
        model = service.registry.model("places")
        assert together == [[to_dict(m) for m in model.sample(n, seed=s)] for n, s in args]
        assert together == [post(n, s) for n, s in args]  # and one at a time, over HTTP
    finally:
        stop()
        service.close()


def test_batching_settings(monkeypatch):
    monkeypatch.setenv("SYNTH_BATCH_WINDOW_MS", "0")
    s = load_settings(batch_max_rows=32, model_threads=1)
    assert s.batching() == BatchConfig(window_ms=0.0, max_rows=32, threads=1)
    from synth.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_settings(batch_max_rows=0)
    assert "batch_max_rows" in str(e.value.violations)
