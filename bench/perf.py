"""Performance benchmark: training, in-process inference, serving and memory, one table.

    python bench/perf.py                 # the full run (about 5 minutes on 2 cores); writes docs/benchmarks.md
    python bench/perf.py --quick --no-doc --json /tmp/perf.json   # a smoke run (seconds)
    make perf

Runs on CUDA when available (`--device auto`), else on the CPU. Each part runs in its own
child process, so its peak RSS is its own:

- train: records/s of `Trainer.train_step` at batch 256 and at the best of a sweep of
  batch sizes, for the Vermont address model with the paper's config
  (bench/configs/paper.toml: the default ModelConfig), the bundled model's config
  (best.toml) and a schema with a repeated message (houses grouped by street, from the
  same Vermont rows); a naive reference (one nn.GRUCell call per field and per time step
  over the whole padded batch, written here only) for comparison; model FLOPs per record
  (torch.utils.flop_counter: matrix products of one forward+backward) and the achieved
  FLOP/s as a share of a same-run fp32 matmul's FLOP/s;
- inprocess: records/s of `Model.sample`, `encode` (the encoder network, and refined) and `decode` of the bundled model;
- serving: a real `synth serve` process (python -m synth.server) on loopback, driven by
  a load generator in another process (`--part loadgen`): REST `:sample` latency p50/p99
  for n=1 and n=100 with 1 and 16 concurrent clients, `/healthz` and gRPC health latency
  measured alongside, gRPC `Sample` and REST NDJSON streams of 100,000 records (each the
  better of two runs, as the in-process rates are the best of two);
- memory: peak RSS of the training child and of the server process.

The table goes to the "perf" block of docs/benchmarks.md (bench/doc.py) unless --no-doc;
--json writes every number. The machine's load average is recorded before and after.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from doc import cpu_name, replace_block  # noqa: E402

MODEL = "vermont-address"
PROTO = ROOT / "protos/examples/address.proto"
STREET_PROTO = """syntax = "proto3";
package perf;
// Vermont addresses grouped by street: a repeated message of real rows.
message House { string number = 1; double lat = 2; double lon = 3; }
message Street { string street = 1; string city = 2; string postcode = 3; repeated House houses = 4; }
"""


def log(msg: str) -> None:
    print(f"[perf {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- data

def vermont(n: int) -> list[dict]:
    from bench.datasets.vermont import split

    train, _ = split(0)
    return train[:n]


def streets(rows: list[dict], max_houses: int = 8) -> list[dict]:
    """Real rows grouped by (street, city, postcode): records with a repeated message."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r.get("street", ""), r.get("city", ""), r.get("postcode", ""))
        houses = groups.setdefault(key, [])
        if len(houses) < max_houses:
            houses.append({"number": r.get("number", ""), "lat": r["lat"], "lon": r["lon"]})
    return [{"street": s, "city": c, "postcode": p, "houses": h} for (s, c, p), h in groups.items()]


# ----------------------------------------------------------------------------- training

def trainer_for(model, train_cfg, records: list, batch: int, device: str):
    from synth.train import Trainer

    cfg = dataclasses.replace(train_cfg, batch_size=batch, steps=10**6, eval_every=0, log_every=0,
                              checkpoint_every=0, validation_fraction=0.0, device=device, time_budget_s=0)
    return Trainer(model, cfg, records, progress=False)


def train_rate(make_model, train_cfg, records: list, batch: int, steps: int, device: str) -> float:
    """Training records/s over `steps` steps after warm-up steps (a fresh model).

    With encoding workers, the warm-up also drains the batches they encoded ahead while the
    model was being built, so the timed steps see the steady state, not a full queue."""
    tr = trainer_for(make_model(), train_cfg, records, batch, device)
    for _ in range(2 + tr.loader_workers() + 1):
        tr.train_step()
        tr.step += 1
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
        tr.step += 1
    sync(device)
    rate = batch * steps / (time.perf_counter() - t0)
    tr.close()
    return rate


def flops_per_record(make_model, train_cfg, records: list, batch: int, device: str) -> float:
    """Matrix-product FLOPs of one training step (forward and backward), per record."""
    from torch.utils.flop_counter import FlopCounterMode

    tr = trainer_for(make_model(), train_cfg, records, batch, device)
    tr.train_step()
    tr.step += 1
    with FlopCounterMode(display=False) as counter:
        tr.train_step()
    tr.close()
    return counter.get_total_flops() / batch


def matmul_flops(device: str, n: int = 2048, reps: int = 5) -> float:
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def naive_rate(records: list, batch: int, steps: int, device: str, dim: int = 128, char_dim: int = 16) -> float:
    """A naive reference of the address VAE's training step: every string field separately,
    one nn.GRUCell call per time step over the whole padded batch, then a GRU over the fields."""
    import torch
    from torch import nn

    fields = ["number", "street", "unit", "city", "district", "region", "postcode"]
    torch.manual_seed(0)
    embed = nn.Embedding(257, char_dim).to(device)
    enc = nn.ModuleDict({f: nn.GRUCell(char_dim, dim) for f in fields}).to(device)
    dec = nn.ModuleDict({f: nn.GRUCell(char_dim, dim) for f in fields}).to(device)
    out = nn.Linear(dim, 257).to(device)
    tup_enc, tup_dec = nn.GRUCell(dim, dim).to(device), nn.GRUCell(dim, dim).to(device)
    floats_enc, floats_dec = nn.Linear(2, dim).to(device), nn.Linear(dim, 2).to(device)
    params = [p for m in (embed, enc, dec, out, tup_enc, tup_dec, floats_enc, floats_dec) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)

    def tokens(rows: list[dict], f: str) -> torch.Tensor:
        data = [str(r.get(f, "")).encode() + b"\x00" for r in rows]
        t = torch.full((len(rows), max(len(d) for d in data)), 256, dtype=torch.long)
        for i, d in enumerate(data):
            t[i, : len(d) - 1] = torch.tensor(list(d[:-1]), dtype=torch.long)
        return t.to(device)

    def step(rows: list[dict]) -> None:
        n = len(rows)
        loss = torch.zeros((), device=device)
        h_rec = torch.zeros(n, dim, device=device)
        embs = []
        for f in fields:  # encoder: per field, per step, the full batch
            tok = tokens(rows, f)
            h = torch.zeros(n, dim, device=device)
            for t in range(tok.shape[1]):
                h = enc[f](embed(tok[:, t]), h)
            embs.append((f, tok, h))
            h_rec = tup_enc(h, h_rec)
        xy = torch.tensor([[r["lat"], r["lon"]] for r in rows], device=device)
        h_rec = tup_enc(torch.sigmoid(floats_enc(xy - xy.mean(0))), h_rec)
        h = h_rec
        for f, tok, _ in embs:  # decoder: teacher-forced characters
            h = tup_dec(torch.zeros_like(h), h)
            s = h
            prev = torch.full((n,), 256, dtype=torch.long, device=device)
            for t in range(tok.shape[1]):
                s = dec[f](embed(prev), s)
                loss = loss + nn.functional.cross_entropy(out(s), tok[:, t])
                prev = tok[:, t]
        loss = loss + ((floats_dec(tup_dec(torch.zeros_like(h), h)) - (xy - xy.mean(0))) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    batches = [records[i * batch % len(records):][:batch] for i in range(steps + 1)]
    step(batches[0])
    sync(device)
    t0 = time.perf_counter()
    for rows in batches[1:]:
        step(rows)
    sync(device)
    return batch * steps / (time.perf_counter() - t0)


def part_train(a: argparse.Namespace) -> dict[str, Any]:
    import torch

    from synth import store
    from synth.model import Model
    from synth.run_config import load_run_config
    from synth.train.prefetch import auto_workers

    device = resolve_device(a.device)
    cuda = device.startswith("cuda")
    n_rows, steps = (400, 2) if a.quick else ((70000, 20) if cuda else (20000, 6))
    # A GPU runs out of per-step overhead only at much larger batches
    sweep = [32] if a.quick else ([256, 1024, 4096, 16384, 32768, 65536] if cuda else [64, 128, 256, 512, 1024])
    base = 32 if a.quick else 256
    rows = vermont(n_rows)
    paper = load_run_config(ROOT / "bench/configs/paper.toml")
    best = load_run_config(ROOT / "bench/configs/best.toml")
    bundled_cfg = store.load(store.bundled_models()[MODEL]).config
    out: dict[str, Any] = {"device": device, "threads": torch.get_num_threads()}

    def address(cfg):
        return lambda: Model.create(PROTO, "Address", records=rows, config=cfg)

    log("training: address model (paper config), batch sweep")
    rates = {b: train_rate(address(paper.model), paper.train, rows, b, steps, device) for b in sweep}
    best_batch = max(rates, key=rates.get)
    out["address"] = {"batch": base, "rate": rates.get(base) or rates[best_batch], "sweep": rates,
                      "best_batch": best_batch, "best_rate": rates[best_batch]}
    if cuda:  # bf16 autocast ([train] precision): a GPU lever, not measured on the CPU
        log("training: address model, bf16 autocast")
        bf16 = dataclasses.replace(paper.train, precision="bf16")
        out["address_bf16"] = {b: train_rate(address(paper.model), bf16, rows, b, steps, device)
                               for b in (base, best_batch)}
        log("training: address model, encoding workers at the best batch")
        out["address_workers"] = {
            w: train_rate(address(paper.model), dataclasses.replace(paper.train, loader_workers=w), rows,
                          best_batch, steps, device)
            for w in (0, 4, 8)}
        out["auto_workers"] = auto_workers("cuda")
    log("training: bundled model's config, batch sweep")
    # its own sweep: the default recipe's FLOP share (issue 10's 60%) depends on the batch
    sweep_b = sweep if (a.quick or cuda) else [*sweep[2:], 2048]
    rates_b = {b: train_rate(address(bundled_cfg), best.train, rows, b, steps, device) for b in sweep_b}
    best_b = max(rates_b, key=rates_b.get)
    out["bundled_config"] = {"batch": base, "rate": rates_b.get(base) or rates_b[best_b], "sweep": rates_b,
                             "best_batch": best_b}
    log("training: repeated schema")
    grouped = streets(vermont(n_rows * 3))
    make_streets = lambda: Model.create(STREET_PROTO, "Street", records=grouped, config=paper.model)  # noqa: E731
    out["repeated"] = {"batch": base, "rate": train_rate(make_streets, paper.train, grouped, base, steps, device),
                       "records": len(grouped)}
    log("training: naive nn.GRUCell reference")
    out["naive"] = {"batch": base, "rate": naive_rate(rows, base, max(1, steps // 2), device)}
    log("FLOPs")
    flops = flops_per_record(address(paper.model), paper.train, rows, base, device)
    peak = matmul_flops(device, 512 if a.quick else (8192 if cuda else 2048))
    out["flops"] = {"per_record": flops, "achieved": flops * out["address"]["rate"], "matmul": peak,
                    "share": flops * out["address"]["rate"] / peak}
    # issue 10 sets its 60% for the default recipe: the bundled model's config, at batch 256
    # and at its best batch
    log("FLOPs, bundled model's config")
    flops_b = flops_per_record(address(bundled_cfg), best.train, rows, base, device)
    shown = {b: rates_b[b] for b in dict.fromkeys([base, best_b]) if b in rates_b}
    out["flops_bundled"] = {"per_record": flops_b, "matmul": peak,
                            "share": {b: flops_b * r / peak for b, r in shown.items()}, "rate": shown}
    out["peak_rss_mb"] = peak_rss_mb()
    return out


# ----------------------------------------------------------------------------- in-process inference

def best_of(fn, reps: int = 2) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def part_inprocess(a: argparse.Namespace) -> dict[str, Any]:
    import torch

    from synth import store

    device = resolve_device(a.device)
    model = store.load(store.bundled_models()[MODEL], device=device)
    n = 256 if a.quick else (131072 if device.startswith("cuda") else 8192)
    rows = vermont(min(n, 65536))
    rows = (rows * (n // len(rows) + 1))[:n]
    model.sample(64, seed=0)  # warm-up
    sample_s = best_of(lambda: model.sample(n, seed=1))
    z = model.sample_latents(n, model.generator(4)).to(model.device)
    chunk = model.chunk

    def generate_tensors() -> None:  # the model's part of sampling: no Python records built
        for i in range(0, n, chunk):
            model.vae.generate(z[i: i + chunk], model.config.sample_temperature, False, model.generator(5),
                               reencode=model.reencode)
        sync(device)

    with torch.inference_mode():
        model.vae.eval()
        tensors_s = best_of(generate_tensors)
    one_s = best_of(lambda: model.sample(1, seed=2), reps=5)
    encode_s = best_of(lambda: model.encode(rows, refine_steps=0))  # the encoder network
    mu, _ = model.encode(rows, refine_steps=0)
    decode_s = best_of(lambda: model.decode(mu, seed=3))
    # encode as the API does it: refined by gradient steps on each record (docs/model.md,
    # "Encoding"), two orders of magnitude slower, so on fewer rows and once
    n_refined = min(n, 64 if a.quick else 1024)
    refined_s = best_of(lambda: model.encode(rows[:n_refined]), reps=1)
    return {"device": device, "threads": torch.get_num_threads(), "n": n, "sample": n / sample_s,
            "generate_tensors": n / tensors_s,
            "sample_one_ms": one_s * 1000, "encode": n / encode_s, "decode": n / decode_s,
            "encode_refined": n_refined / refined_s, "encode_refined_n": n_refined,
            "encode_refine_steps": model.config.encode_refine_steps, "peak_rss_mb": peak_rss_mb()}


# ----------------------------------------------------------------------------- serving

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(device: str, models_dir: Path) -> tuple[subprocess.Popen, str, str]:
    """`synth serve` in its own process (its log in models_dir/server.log); returns (process, url, target)."""
    import http.client

    http_port, grpc_port = free_port(), free_port()
    # SYNTH_* settings and the PYTHONPATH of the caller apply (the checkout first)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "synth.server", "--models", str(models_dir), "--host", "127.0.0.1",
           "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--device", device]
    logfile = (models_dir / "server.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"synth serve exited: {(models_dir / 'server.log').read_text()[-2000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return proc, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("synth serve did not answer /healthz within 120 s")


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def rest_load(url: str, n: int, clients: int, seconds: float, grpc_target: str | None = None) -> dict[str, Any]:
    """`clients` threads, each with its own keep-alive connection, POST :sample for `seconds`;
    a further thread polls /healthz every 50 ms, and one more the gRPC health service (when
    `grpc_target` is given)."""
    import http.client
    from urllib.parse import urlparse

    host, port = urlparse(url).hostname, urlparse(url).port
    lat: list[float] = []
    health: list[float] = []
    errors = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def client(i: int) -> None:
        c = http.client.HTTPConnection(host, port, timeout=60)
        k = 0
        while not stop.is_set():
            body = json.dumps({"n": n, "seed": i * 100000 + k})
            t0 = time.perf_counter()
            c.request("POST", f"/v1/models/{MODEL}:sample", body, {"content-type": "application/json"})
            r = c.getresponse()
            r.read()
            dt = time.perf_counter() - t0
            with lock:
                if r.status == 200:
                    lat.append(dt)
                else:
                    errors[0] += 1
            k += 1

    def healthz() -> None:
        c = http.client.HTTPConnection(host, port, timeout=60)
        while not stop.is_set():
            t0 = time.perf_counter()
            c.request("GET", "/healthz")
            c.getresponse().read()
            health.append(time.perf_counter() - t0)
            stop.wait(0.05)

    grpc_health: list[float] = []

    def grpc_check() -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(grpc_target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)  # the channel's connection
            while not stop.is_set():
                t0 = time.perf_counter()
                stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
                grpc_health.append(time.perf_counter() - t0)
                stop.wait(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)] + [threading.Thread(target=healthz)]
    if grpc_target:
        threads.append(threading.Thread(target=grpc_check))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"n": n, "clients": clients, "requests": len(lat), "errors": errors[0], "rps": len(lat) / wall,
            "p50_ms": 1000 * pct(lat, 0.5), "p99_ms": 1000 * pct(lat, 0.99),
            "healthz_p50_ms": 1000 * pct(health, 0.5), "healthz_p99_ms": 1000 * pct(health, 0.99),
            **({"grpc_health_p50_ms": 1000 * pct(grpc_health, 0.5), "grpc_health_p99_ms": 1000 * pct(grpc_health, 0.99)}
               if grpc_target else {})}


def grpc_stream(target: str, n: int) -> float:
    import grpc

    from synth_contract._proto import synthesizer_pb2 as pb
    from synth_contract._proto import synthesizer_pb2_grpc as pb_grpc

    stub = pb_grpc.SynthesizerStub(grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)]))
    t0 = time.perf_counter()
    got = sum(len(r.records) for r in stub.Sample(pb.SampleRequest(model=MODEL, n=n, seed=1), timeout=600))
    assert got == n, (got, n)
    return n / (time.perf_counter() - t0)


def ndjson_stream(url: str, n: int) -> float:
    import http.client
    from urllib.parse import urlparse

    u = urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", f"/v1/models/{MODEL}:sample", json.dumps({"n": n, "seed": 1}),
              {"content-type": "application/json", "accept": "application/x-ndjson"})
    r = c.getresponse()
    lines = 0
    while chunk := r.read(1 << 16):
        lines += chunk.count(b"\n")
    assert lines == n, (lines, n)
    return n / (time.perf_counter() - t0)


def part_loadgen(a: argparse.Namespace) -> dict[str, Any]:
    seconds = a.seconds or (1.0 if a.quick else 10.0)
    stream_n = 2000 if a.quick else 100_000
    out: dict[str, Any] = {"rest": []}
    for n in (1, 100):
        for clients in (1, 16):
            log(f"REST :sample n={n}, {clients} client(s), {seconds:g} s")
            out["rest"].append(rest_load(a.url, n, clients, seconds, a.grpc))
    # the best of two, as the in-process rates they are compared with (best_of)
    log(f"gRPC Sample stream of {stream_n}, twice")
    out["grpc_stream"] = max(grpc_stream(a.grpc, stream_n) for _ in range(2))
    log(f"REST NDJSON stream of {stream_n}, twice")
    out["ndjson_stream"] = max(ndjson_stream(a.url, stream_n) for _ in range(2))
    out["stream_n"] = stream_n
    return out


def serving(a: argparse.Namespace, device: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, target = start_server(device, Path(tmp))
        try:
            for _ in range(3):  # warm-up (the bundled model is preloaded at start)
                rest_load(url, 1, 1, 0.2)
            res = child(a, "loadgen", ["--url", url, "--grpc", target])
            res["server_peak_rss_mb"] = vm_hwm_mb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return res


# ----------------------------------------------------------------------------- orchestration

def child(a: argparse.Namespace, part: str, extra: list[str] | None = None) -> dict[str, Any]:
    """Run one part in a fresh interpreter and return its JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", part, "--device", a.device,
           "--part-json", str(out)] + (["--quick"] if a.quick else []) + (extra or []) \
        + (["--seconds", str(a.seconds)] if a.seconds else [])
    subprocess.run(cmd, check=True, cwd=ROOT)
    try:
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def versions() -> str:
    import torch

    import synth

    return f"protosynth {synth.__version__}, torch {torch.__version__}, Python {platform.python_version()}"


def hardware(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}); host {cpu_name()}"
    return cpu_name()


def naive_ratio(ours: float, naive: float) -> str:
    """The naive loop against ours, read the right way round whichever is faster."""
    return f"{ours / naive:.1f}x slower than ours" if ours >= naive else f"ours is {naive / ours:.1f}x slower"


def table(r: dict[str, Any]) -> str:
    t, i, s = r["train"], r["inprocess"], r["serving"]
    f = t["flops"]
    lines = ["| measurement | value |", "|---|---|"]
    add = lambda k, v: lines.append(f"| {k} | {v} |")  # noqa: E731
    add(f"train, address model (paper config), batch {t['address']['batch']}", f"{t['address']['rate']:,.0f} records/s")
    sweep = ", ".join(f"{b}: {v:,.0f}" for b, v in t["address"]["sweep"].items())
    add(f"train, address model, best batch ({t['address']['best_batch']})",
        f"{t['address']['best_rate']:,.0f} records/s (sweep {sweep})")
    for b, rate in (t.get("address_bf16") or {}).items():
        add(f"train, address model, bf16 autocast, batch {b}", f"{rate:,.0f} records/s")
    for w, rate in (t.get("address_workers") or {}).items():
        add(f"train, address model, batch {t['address']['best_batch']}, loader_workers {w}"
            f"{' (encoding in the training process)' if str(w) == '0' else ''}", f"{rate:,.0f} records/s")
    if t.get("auto_workers") is not None:
        add("loader_workers auto (the rows above it, bf16 included)", f"{t['auto_workers']}")
    add(f"train, bundled model's config (best.toml), batch {t['bundled_config']['batch']}",
        f"{t['bundled_config']['rate']:,.0f} records/s")
    if "sweep" in t["bundled_config"]:
        sweep_b = ", ".join(f"{b}: {v:,.0f}" for b, v in t["bundled_config"]["sweep"].items())
        add(f"train, bundled model's config, best batch ({t['bundled_config']['best_batch']})",
            f"{max(t['bundled_config']['sweep'].values()):,.0f} records/s (sweep {sweep_b})")
    add(f"train, repeated schema (Street with repeated House), batch {t['repeated']['batch']}",
        f"{t['repeated']['rate']:,.0f} records/s")
    add(f"train, naive reference (nn.GRUCell per field and step), batch {t['naive']['batch']}",
        f"{t['naive']['rate']:,.0f} records/s ({naive_ratio(t['address']['rate'], t['naive']['rate'])})")
    add("model FLOPs per record (matrix products, forward + backward)", f"{f['per_record'] / 1e6:,.1f} MFLOP")
    add("achieved FLOP/s (address, batch 256) / fp32 matmul FLOP/s",
        f"{f['achieved'] / 1e9:,.2f} / {f['matmul'] / 1e9:,.1f} GFLOP/s = {100 * f['share']:.1f}%")
    if fb := t.get("flops_bundled"):
        shares = ", ".join(f"batch {b}: {fb['rate'][b]:,.0f} records/s, {100 * v:.1f}%"
                           for b, v in fb["share"].items())
        add("the default recipe (bundled model's config): FLOPs per record; achieved / matmul FLOP/s",
            f"{fb['per_record'] / 1e6:,.1f} MFLOP; {shares}")
    add(f"in-process sample, bundled model (n={i['n']})",
        f"{i['sample']:,.0f} records/s = {i['sample'] / t['bundled_config']['rate']:.1f}x its config's training")
    if "generate_tensors" in i:
        add(f"in-process generation alone (n={i['n']}: latents to token tensors, no records built)",
            f"{i['generate_tensors']:,.0f} records/s")
    add("in-process sample n=1", f"{i['sample_one_ms']:.1f} ms")
    add(f"in-process encode (encoder network) / decode (n={i['n']})",
        f"{i['encode']:,.0f} / {i['decode']:,.0f} records/s")
    if "encode_refined" in i:
        add(f"in-process encode, refined ({i['encode_refine_steps']} steps; n={i['encode_refined_n']})",
            f"{i['encode_refined']:,.0f} records/s")
    for x in s["rest"]:
        add(f"REST :sample n={x['n']}, {x['clients']} client(s)",
            f"{x['rps']:,.1f} req/s; p50 {x['p50_ms']:.1f} ms, p99 {x['p99_ms']:.1f} ms; /healthz p50 "
            f"{x['healthz_p50_ms']:.1f} ms, p99 {x['healthz_p99_ms']:.1f} ms"
            + (f"; gRPC health p50 {x['grpc_health_p50_ms']:.1f} ms, p99 {x['grpc_health_p99_ms']:.1f} ms"
               if "grpc_health_p50_ms" in x else "")
            + f" ({x['requests']} requests, {x['errors']} errors)")
    one = {(x["n"], x["clients"]): x for x in s["rest"]}
    if (1, 1) in one and (1, 16) in one:
        add("REST n=1: 16 clients vs 1", f"{one[(1, 16)]['rps'] / one[(1, 1)]['rps']:.1f}x the requests/s; "
            f"p99 = {one[(1, 16)]['p99_ms'] / one[(1, 1)]['p50_ms']:.1f}x the single-client p50")
    add(f"gRPC Sample stream, n={s['stream_n']:,}",
        f"{s['grpc_stream']:,.0f} records/s ({100 * s['grpc_stream'] / i['sample']:.0f}% of in-process)")
    add(f"REST NDJSON stream, n={s['stream_n']:,}",
        f"{s['ndjson_stream']:,.0f} records/s ({100 * s['ndjson_stream'] / i['sample']:.0f}% of in-process)")
    add("peak RSS: training child / in-process child / server",
        f"{t['peak_rss_mb']:,.0f} / {i['peak_rss_mb']:,.0f} / {s.get('server_peak_rss_mb') or float('nan'):,.0f} MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every part (seconds)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument("--json", type=Path, help="write every number here")
    ap.add_argument("--note", default="", help="a line added under the table (how it was run)")
    ap.add_argument("--seconds", type=float, help="load per REST scenario (default 10; 1 with --quick)")
    ap.add_argument("--part", choices=("train", "inprocess", "loadgen"), help=argparse.SUPPRESS)
    ap.add_argument("--part-json", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--grpc", help=argparse.SUPPRESS)
    ap.add_argument("--doc-from", type=Path, metavar="JSON",
                    help="write the doc block of an earlier run's --json (e.g. one copied back from a GPU machine)")
    a = ap.parse_args(argv)
    if a.doc_from:
        results = json.loads(a.doc_from.read_text())
        write_doc(results, a.note or "")
        print(table(results))
        return 0
    if a.part:
        if a.part in ("train", "inprocess"):  # as `synth train` and `synth sample` do (synth/allocator.py)
            from synth.allocator import keep_freed_memory

            keep_freed_memory()
        result = {"train": part_train, "inprocess": part_inprocess, "loadgen": part_loadgen}[a.part](a)
        a.part_json.write_text(json.dumps(result))
        return 0
    command = "python bench/perf.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load_before = os.getloadavg()
    device = resolve_device(a.device)
    t0 = time.time()
    results: dict[str, Any] = {"command": command.strip(), "device": device, "versions": versions(),
                               "hardware": hardware(device), "load_before": load_before}
    results["train"] = child(a, "train")
    results["inprocess"] = child(a, "inprocess")
    results["serving"] = serving(a, device)
    results["load_after"] = os.getloadavg()
    results["wall_s"] = time.time() - t0
    print(table(results))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    if not a.no_doc:
        write_doc(results, a.note)
    return 0


def write_doc(results: dict[str, Any], note: str) -> None:
    """The run's table and its header in docs/benchmarks.md."""
    lb, la, device = results["load_before"], results["load_after"], results["device"]
    head = (f"Command: `{results['command']}`  \n"
            f"Hardware: {results['hardware']}; device {device}; torch threads {results['train']['threads']}  \n"
            f"Versions: {results['versions']}  \n"
            f"Load average (1/5/15 min) before: {lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f}, after: "
            f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}; wall {results['wall_s'] / 60:.1f} min")
    # The GPU table has its own block: a CUDA run does not replace the CPU figures
    block, title = ("perf-gpu", "Performance on a GPU") if device.startswith("cuda") else ("perf", "Performance")
    replace_block(block, title, head + "\n\n" + table(results) + (f"\n\n{note}" if note else ""))


if __name__ == "__main__":
    sys.exit(main())
