"""A bounded load test of `synth serve` (issue 9): a real server process, loaded from this one.

    python bench/load.py [--clients 32] [--seconds 60] [--long-streams 16] [--write-doc]

Starts `python -m synth.server` (the bundled `vermont-address`, CPU) on free loopback
ports, warms every operation up (then `--warmup` seconds of the clients' load below, without the
long streams), and then, for `--seconds`:

- `--clients` threads call in a closed loop, in turn: REST and gRPC sample n=1,
  sample n=100, encode (4 records) and interpolate (8 steps);
- `--long-streams` gRPC `Sample` streams of a million records stay open the whole
  time, each read one message every `--stream-pace` seconds (a slow consumer);
- a prober calls REST `/healthz` and gRPC `grpc.health.v1/Check` every 0.2 s.

It records every error (the pass condition is none), the latency of each operation
and of the health probes (p50 / p99 / max; the probes must stay under 1 s), and the
server's RSS before (after the warm-up), at its peak, and after the load (once the
streams are closed and the server idled `--settle` seconds; it must be within 10% of
the baseline, taken after the warm-up load). `--write-doc` writes the table to docs/benchmarks.md ("Load test").
Exit status 1 when a pass condition fails.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients" / "python"))
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import httpx  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from bench.doc import cpu_name, replace_block  # noqa: E402
from synth_client import SynthClient  # noqa: E402
from synth_contract._proto import synthesizer_pb2 as pb  # noqa: E402
from synth_contract._proto import synthesizer_pb2_grpc as pb_grpc  # noqa: E402

MODEL = "vermont-address"
LONG = 1_000_000


# ----------------------------------------------------------------------------- the server

def start_server(extra: list[str]) -> tuple[subprocess.Popen, str, str, list[str]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    models = tempfile.mkdtemp(prefix="synth-load-")  # empty: the bundled model is served
    proc = subprocess.Popen([sys.executable, "-m", "synth.server", "--models", models, "--http-port", "0",
                             "--grpc-port", "0", "--device", "cpu", *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C to stop" in line:
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(120) or proc.poll() is not None:
        proc.kill()
        raise SystemExit("the server did not start:\n" + "".join(lines))
    text = "".join(lines)
    url = re.search(r"REST\s+(http://\S+)/v1/models", text).group(1)
    target = re.search(r"gRPC\s+(\S+:\d+)", text).group(1)
    return proc, url, target, lines


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------------------- recording

class Record:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)

    def timed(self, name: str, fn: Callable[[], Any]) -> None:
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is counted and shown
            with self.lock:
                self.errors[name].append(f"{type(e).__name__}: {str(e)[:200]}")
            return
        with self.lock:
            self.latency[name].append(time.perf_counter() - t0)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ----------------------------------------------------------------------------- load

def operations(url: str, target: str, records: list[dict]) -> list[tuple[str, Callable[[Any, Any], Any]]]:
    pair = (records[0], records[1])
    return [
        ("rest sample n=1", lambda r, g: r.sample(MODEL, 1)),
        ("grpc sample n=1", lambda r, g: g.sample(MODEL, 1)),
        ("rest sample n=100", lambda r, g: r.sample(MODEL, 100)),
        ("grpc sample n=100", lambda r, g: g.sample(MODEL, 100)),
        ("rest encode", lambda r, g: r.encode(MODEL, records[:4])),
        ("grpc encode", lambda r, g: g.encode(MODEL, records[:4])),
        ("rest interpolate", lambda r, g: r.interpolate(MODEL, *pair, steps=8)),
        ("grpc interpolate", lambda r, g: g.interpolate(MODEL, *pair, steps=8)),
    ]


def client_loop(i: int, url: str, target: str, ops: list, rec: Record, stop: threading.Event) -> None:
    with SynthClient.rest(url, timeout=120) as rest, SynthClient.grpc(target, timeout=120) as rpc:
        k = i  # each client starts at a different operation, so the mix is even from the start
        while not stop.is_set():
            name, fn = ops[k % len(ops)]
            rec.timed(name, lambda: fn(rest, rpc))
            k += 1


def long_stream(i: int, stub: Any, pace: float, rec: Record, stop: threading.Event, opened: list) -> None:
    call = stub.Sample(pb.SampleRequest(model=MODEL, n=LONG, seed=i), timeout=3600)
    received = 0
    try:
        for message in call:
            received += len(message.records)
            if received == len(message.records):
                opened.append(i)
            if stop.wait(pace):
                break
    except grpc.RpcError as e:
        if not stop.is_set():
            rec.errors["long stream"].append(f"{e.code().name}: {e.details()}")
    finally:
        call.cancel()
        with rec.lock:
            rec.latency["long stream records"].append(received)


def prober(url: str, target: str, rec: Record, stop: threading.Event, every: float = 0.2) -> None:
    with httpx.Client(timeout=5) as http, grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        def rest() -> None:
            r = http.get(url + "/healthz")
            r.raise_for_status()

        def check() -> None:
            if health.Check(health_pb2.HealthCheckRequest(), timeout=5).status != health_pb2.HealthCheckResponse.SERVING:
                raise RuntimeError("not SERVING")

        while not stop.wait(every):
            rec.timed("REST /healthz", rest)
            rec.timed("gRPC health", check)


def run_load(a: Any, url: str, target: str, ops: list, rec: Record, seconds: float, pid: int,
             long_streams: int | None = None) -> tuple[float, float, int]:
    """Clients, long streams and the prober for `seconds`; (elapsed, peak RSS MB, long streams opened)."""
    stop = threading.Event()
    channel = grpc.insecure_channel(target)
    stub = pb_grpc.SynthesizerStub(channel)
    opened: list[int] = []
    threads = [threading.Thread(target=long_stream, args=(i, stub, a.stream_pace, rec, stop, opened))
               for i in range(a.long_streams if long_streams is None else long_streams)]
    threads.append(threading.Thread(target=prober, args=(url, target, rec, stop)))
    threads += [threading.Thread(target=client_loop, args=(i, url, target, ops, rec, stop))
                for i in range(a.clients)]
    peak, t0 = 0.0, time.monotonic()
    for t in threads:
        t.start()
    while time.monotonic() - t0 < seconds:
        time.sleep(0.5)
        peak = max(peak, rss_mb(pid))
    streams_open = len(opened)
    stop.set()
    for t in threads:
        t.join(180)
    channel.close()
    return time.monotonic() - t0, peak, streams_open


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--long-streams", type=int, default=16)
    p.add_argument("--stream-pace", type=float, default=2.0, help="seconds between reads of a long stream")
    p.add_argument("--settle", type=float, default=10.0, help="idle seconds before each RSS reading")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of the same load before the baseline")
    p.add_argument("--server-flag", action="append", default=[], help="extra `synth serve` flag (repeatable)")
    p.add_argument("--write-doc", action="store_true")
    a = p.parse_args(argv)

    proc, url, target, server_out = start_server(a.server_flag)
    rec = Record()
    try:
        with SynthClient.rest(url, timeout=120) as c:
            records = c.sample(MODEL, 8, seed=1)
        ops = operations(url, target, records)
        warm = Record()
        with SynthClient.rest(url, timeout=120) as r, SynthClient.grpc(target, timeout=120) as g:
            for _ in range(3):  # every operation a few times: lazy imports, caches, thread pools
                for name, fn in ops:
                    warm.timed(name, lambda: fn(r, g))
        if warm.errors:
            raise SystemExit(f"warm-up failed: {dict(warm.errors)}")
        # The same load, briefly and unrecorded: the server's thread pools (and their malloc arenas)
        # exist before the baseline, so "after" compares steady states and shows what load leaves behind.
        run_load(a, url, target, ops, Record(), a.warmup, proc.pid, long_streams=0)
        time.sleep(a.settle)
        baseline = rss_mb(proc.pid)
        elapsed, peak, streams_open = run_load(a, url, target, ops, rec, a.seconds, proc.pid)
        peak = max(peak, baseline)
        time.sleep(a.settle)
        after = rss_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    errors = sum(len(v) for v in rec.errors.values())
    probes = rec.latency["REST /healthz"] + rec.latency["gRPC health"]
    ok = (errors == 0 and probes and pct(probes, 0.99) < 1.0 and after <= 1.1 * baseline
          and streams_open == a.long_streams)
    table = report(a, rec, elapsed, baseline, peak, after, streams_open, ok)
    print(table)
    for name, errs in rec.errors.items():
        print(f"errors in {name}: {len(errs)}; first: {errs[:3]}")
    if a.write_doc:
        replace_block("load", "Load test", table)
    return 0 if ok else 1


def report(a: Any, rec: Record, elapsed: float, baseline: float, peak: float, after: float, streams_open: int,
           ok: bool) -> str:
    flags = " ".join(f"--server-flag={f}" for f in a.server_flag)
    lines = [
        f"Hardware: {cpu_name()}, CPU only; server and load generator on the same machine (loopback).",
        "",
        f"Command: `python bench/load.py --clients {a.clients} --seconds {a.seconds:g} "
        f"--long-streams {a.long_streams} --stream-pace {a.stream_pace:g}{' ' + flags if flags else ''} "
        "--write-doc` (server: `synth serve` defaults, model `vermont-address`).",
        "",
        f"{a.clients} clients in a closed loop for {elapsed:.0f} s, {streams_open} of {a.long_streams} long gRPC "
        f"streams open throughout (one message of `sample_chunk` records read every {a.stream_pace:g} s "
        "each), health probed "
        "every 0.2 s on both transports. Result: " + ("**pass**" if ok else "**FAIL**") + ".",
        "",
        "| call | count | errors | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = [n for n in rec.latency if n != "long stream records"] + \
        [n for n in rec.errors if n not in rec.latency]
    for name in names:
        xs = rec.latency.get(name, [])
        lines.append(f"| {name} | {len(xs)} | {len(rec.errors.get(name, []))} | {pct(xs, 0.5) * 1e3:.0f} | "
                     f"{pct(xs, 0.99) * 1e3:.0f} | {max(xs) * 1e3 if xs else float('nan'):.0f} |")
    streamed = rec.latency.get("long stream records", [])
    lines += [
        "",
        f"Long streams: {int(sum(streamed)):,} records received in all; errors: "
        f"{len(rec.errors.get('long stream', []))}.",
        "",
        "| server RSS | MB |",
        "|---|---:|",
        f"| before (after {a.warmup:g} s of the clients' load and {a.settle:g} s idle) | {baseline:.0f} |",
        f"| peak under load | {peak:.0f} |",
        f"| after ({a.settle:g} s idle, streams closed) | {after:.0f} ({(after / baseline - 1) * 100:+.1f}%) |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
