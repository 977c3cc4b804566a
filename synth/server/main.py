"""`synth serve`: the REST app and the gRPC server in one process, over one service.

`serve(settings)` blocks until Ctrl-C (or SIGTERM, as `docker stop` sends), then
shuts down gracefully (`_shut_down`): both servers stop accepting work at once,
in-flight requests get `shutdown_grace` seconds to finish, streams end cleanly at
their next chunk, and running jobs are cancelled. Settings come from
`synth.server.settings` (flags, `SYNTH_*` variables, defaults).
"""
from __future__ import annotations

import logging
import math
import signal
import threading
import time

import grpc
import uvicorn

from synth.server.admission import Admission
from synth.server.grpc.server import create_grpc_server
from synth.server.rest.app import create_app
from synth import store
from synth.server.settings import ServerSettings
from synth.service import ModelRegistry, SynthService

log = logging.getLogger("synth.server")


def serve(settings: ServerSettings | None = None) -> None:
    """Serve the models directory (plus the bundled models) over HTTP and gRPC until interrupted."""
    settings = settings or ServerSettings()
    settings.check()  # TLS files, token file: ConfigError before anything starts
    host, http_port, grpc_port = settings.host, settings.http_port, settings.grpc_port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    access, tls = settings.access_policy(), settings.tls()
    registry = ModelRegistry(settings.models, device=settings.resolved_device())
    service = SynthService(registry, settings.limits(), settings.batching())
    admission = settings.admission()  # one for both transports: the stream bounds count them together
    grpc_server, bound_grpc = create_grpc_server(
        service, f"{_grpc_host(host)}:{grpc_port}", max_workers=settings.grpc_workers, access=access,
        tls=(tls[0].read_bytes(), tls[1].read_bytes()) if tls else None, admission=admission,
        reserved_workers=settings.grpc_reserved_workers)
    app = create_app(service, preload=sorted(store.bundled_models()), access=access, admission=admission)
    ssl = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])} if tls else {}
    http = uvicorn.Server(uvicorn.Config(app, host=host, port=http_port, log_level="info",
                                         timeout_graceful_shutdown=math.ceil(settings.shutdown_grace), **ssl))
    http_thread = threading.Thread(target=http.run, name="synth-http", daemon=True)

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) \
        if threading.current_thread() is threading.main_thread() else None
    grpc_server.start()
    http_thread.start()
    try:
        while not http.started and http_thread.is_alive():
            time.sleep(0.05)
        if not http_thread.is_alive():
            raise SystemExit(f"the HTTP server could not start on {host}:{http_port} (port in use?)")
        print(banner(host, _bound_port(http, http_port), bound_grpc, registry.names(), tls=tls is not None,
                     tokens=access.enabled, public_read=access.public_read), flush=True)
        while not stop.is_set() and http_thread.is_alive():
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print(f"shutting down (grace {settings.shutdown_grace:g} s)...", flush=True)
        _shut_down(settings.shutdown_grace, admission, http, http_thread, grpc_server, service)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _shut_down(grace: float, admission: Admission, http: uvicorn.Server, http_thread: threading.Thread,
               grpc_server: grpc.Server, service: SynthService) -> None:
    """Stop taking work on both servers at once, then give in-flight requests `grace` seconds.

    New REST connections are refused (uvicorn closes its sockets) and new RPCs get
    UNAVAILABLE (grpc's `stop`); running streams end at their next chunk with
    UNAVAILABLE or a last `{"error": {"code": "unavailable"}}` line; unary requests
    finish. Whatever still runs after `grace` is cancelled. Then the service closes
    (running jobs are cancelled, the model thread stops): not before, since in-flight
    requests still use it.
    """
    admission.drain()
    http.should_exit = True
    stopped = grpc_server.stop(grace)
    deadline = time.monotonic() + grace
    stopped.wait(max(0.0, deadline - time.monotonic()))
    http_thread.join(max(0.0, deadline - time.monotonic()) + 1.0)  # uvicorn rounds the grace up to seconds
    closing = threading.Thread(target=service.close, name="synth-close", daemon=True)
    closing.start()
    closing.join(max(1.0, deadline - time.monotonic()))


def _grpc_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _bound_port(server: uvicorn.Server, default: int) -> int:
    for s in getattr(server, "servers", []):
        for sock in getattr(s, "sockets", []):
            return sock.getsockname()[1]
    return default


def banner(host: str, http_port: int, grpc_port: int, models: list[str], tls: bool = False,
           tokens: bool = False, public_read: bool = False) -> str:
    """Ready-to-paste examples for the first model being served (tokens are never printed)."""
    shown = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1") else host
    url, target = f"{'https' if tls else 'http'}://{shown}:{http_port}", f"{shown}:{grpc_port}"
    model = models[0] if models else "MODEL"
    listing = ", ".join(models) if models else "(none yet: POST /v1/jobs to train one)"
    curl_auth = " -H \"authorization: Bearer $SYNTH_TOKEN\"" if tokens else ""
    grpc_auth = " -H \"authorization: Bearer $SYNTH_TOKEN\"" if tokens else ""
    plaintext = "" if tls else "-plaintext "
    py_token = ", token=os.environ['SYNTH_TOKEN']" if tokens else ""
    py_import = "import os; " if tokens else ""
    access = ("API tokens required" + (" (reads are public)" if public_read else "") if tokens
              else "open: no API token configured")
    return f"""
protosynth is serving {len(models)} model(s): {listing}
  web page  {url}/
  REST      {url}/v1/models     (OpenAPI: {url}/docs)
  gRPC      {target}            (reflection and grpc.health.v1 enabled{", TLS" if tls else ""})
  access    {access}

Try:
  curl -s {url}/v1/models/{model}:sample{curl_auth} -H 'content-type: application/json' -d '{{"n": 3, "seed": 1}}'
  curl -s {url}/v1/models/{model}:sample{curl_auth} -H 'content-type: application/json' -H 'accept: application/x-ndjson' -d '{{"n": 1000}}' | head
  grpcurl {plaintext}{grpc_auth.strip() + " " if grpc_auth else ""}-d '{{"model": "{model}", "n": 3}}' {target} synth.v1.Synthesizer/Sample

  # pip install ./clients/python   (protosynth-client: torch-free)
  python -c "{py_import}from synth_client import SynthClient; print(SynthClient.rest('{url}'{py_token}).sample('{model}', 3, seed=1))"
  python -c "{py_import}from synth_client import SynthClient; print(SynthClient.grpc('{target}'{py_token}).sample('{model}', 3, seed=1))"

Ctrl-C to stop.
"""
