"""Shared fixtures for the server, client and web tests: a tiny model and real servers.

Imported by tests/test_server_*.py, test_clients.py and test_web.py
(`from conftest_server import *`). The servers are real: uvicorn on a free
loopback port in a thread, and a grpc server bound to 127.0.0.1:0, so the tests
exercise the same sockets, framing and error paths as production (grpc's
errors example test does the same). They are built once per test session,
even when several modules import the fixture.
"""
from __future__ import annotations

import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT_DIR = ROOT / "clients" / "python"
# The torch-free client's source, as if installed (`make test` installs it too).
if str(CLIENT_DIR) not in sys.path:
    sys.path.insert(0, str(CLIENT_DIR))

PLACE_PROTO = """syntax = "proto3";
package test.geo;

// A small address-like record: two correlated strings and a coordinate pair.
message Place {
  string city = 1;
  string postcode = 2;
  double lat = 3;
  double lon = 4;
}
"""
CITIES = [("Burlington", "05401", 44.4759, -73.2121), ("Montpelier", "05602", 44.2601, -72.5754),
          ("Rutland", "05701", 43.6106, -72.9726), ("Brattleboro", "05301", 42.8509, -72.5579),
          ("St. Johnsbury", "05819", 44.4193, -72.0151)]
MODEL = "places"


def place_records(n: int = 100, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        city, postcode, lat, lon = rng.choice(CITIES)
        out.append({"city": city, "postcode": postcode, "lat": round(lat + rng.gauss(0, 0.02), 5),
                    "lon": round(lon + rng.gauss(0, 0.02), 5)})
    return out


def build_models_dir(root: Path) -> Path:
    """A models directory holding the tiny `places` model (untrained: the API tests need shapes, not quality)."""
    from synth import store
    from synth.model_config import ModelConfig
    from synth.model import Model

    import torch

    models = root / "models"
    torch.manual_seed(0)  # the same weights every session: no flaky shapes
    model = Model.create(PLACE_PROTO, "Place", records=place_records(),
                         config=ModelConfig(latent_dim=16, char_dim=8))
    model.metadata = {"summary": {"note": "test fixture"}, "metrics": {"p_value_mean": 0.5}}
    store.save(model, models / MODEL)
    return models


@dataclass
class Servers:
    """Both transports over one service, plus how to reach them."""

    service: Any
    models_dir: Path
    http_url: str
    grpc_target: str
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        while self._stops:
            self._stops.pop()()

    def rest(self) -> Any:
        from synth_client import SynthClient

        return SynthClient.rest(self.http_url, timeout=60)

    def grpc(self) -> Any:
        from synth_client import SynthClient

        return SynthClient.grpc(self.grpc_target, timeout=60)


def start_http(app: Any, **config: Any) -> tuple[str, Callable[[], None]]:
    """Run `app` with uvicorn on a free loopback port in a thread; returns (url, stop).

    `config` goes to uvicorn (e.g. `ssl_certfile`/`ssl_keyfile`, which make the url https).
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    scheme = "https" if config.get("ssl_certfile") else "http"
    return f"{scheme}://127.0.0.1:{port}", stop


class BrokenService:
    """A service whose every call hits a bug (with an internal detail in its text): clients must
    get a generic 500 / INTERNAL, and the operator the detail in the log."""

    SECRET = "secret internal detail /etc/passwd"

    def __init__(self, real: Any):
        self.limits, self.registry = real.limits, real.registry

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError(self.SECRET)
        return fail


def start_servers(models_dir: Path, limits: Any = None) -> Servers:
    from synth.server.grpc.server import create_grpc_server
    from synth.server.rest.app import create_app
    from synth.service import Limits, ModelRegistry, SynthService

    limits = limits or Limits(max_sample=2000, max_records=500, max_interpolate_steps=64, max_train_steps=500,
                              max_upload_bytes=4 << 20, sample_chunk=16)
    service = SynthService(ModelRegistry(models_dir, include_bundled=False), limits)
    url, stop_http = start_http(create_app(service, preload=[MODEL]))
    grpc_server, port = create_grpc_server(service, "127.0.0.1:0")
    grpc_server.start()
    servers = Servers(service, models_dir, url, f"127.0.0.1:{port}")
    servers._stops += [service.close, stop_http, lambda: grpc_server.stop(grace=None).wait(5)]
    return servers


_SESSION: dict[str, Servers] = {}


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Servers:
    """One pair of servers for the whole session (shared by every module that imports this)."""
    if "servers" not in _SESSION:
        _SESSION["servers"] = start_servers(build_models_dir(tmp_path_factory.mktemp("serve")))
    yield _SESSION["servers"]
    _SESSION["servers"].stop()


@pytest.fixture(params=["rest", "grpc"])
def client(request: pytest.FixtureRequest, servers: Servers) -> Any:
    """The client over each transport in turn."""
    c = servers.rest() if request.param == "rest" else servers.grpc()
    yield c
    c.close()


__all__ = ["servers", "client", "Servers", "start_servers", "start_http", "BrokenService", "build_models_dir",
           "place_records", "PLACE_PROTO", "CITIES", "MODEL", "ROOT", "CLIENT_DIR"]
