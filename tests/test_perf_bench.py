"""`bench/perf.py --quick`: every part of the performance benchmark runs, against a real server.

A smoke run (tiny sizes, about half a minute on 2 cores): it trains a few steps, samples,
starts `synth serve` in its own process, drives it from a load generator process and
writes its numbers as JSON. The full run's numbers are in docs/benchmarks.md.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_perf_quick_runs_every_part(tmp_path):
    out = tmp_path / "perf.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    run = subprocess.run([sys.executable, str(ROOT / "bench/perf.py"), "--quick", "--no-doc", "--device", "cpu",
                          "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(out.read_text())
    train, inproc, serving = r["train"], r["inprocess"], r["serving"]
    for key in ("address", "bundled_config", "repeated", "naive"):
        assert train[key]["rate"] > 0, key
    assert train["flops"]["per_record"] > 1e5 and 0 < train["flops"]["share"] < 1
    bundled = train["flops_bundled"]
    assert bundled["per_record"] > 1e5 and all(0 < v < 1 for v in bundled["share"].values())
    assert inproc["sample"] > 0 and inproc["encode"] > 0 and inproc["decode"] > 0
    assert 0 < inproc["encode_refined"] < inproc["encode"]  # refining takes gradient steps per record
    assert {(x["n"], x["clients"]) for x in serving["rest"]} == {(1, 1), (1, 16), (100, 1), (100, 16)}
    assert all(x["requests"] > 0 and x["errors"] == 0 and x["p99_ms"] >= x["p50_ms"] > 0 for x in serving["rest"])
    assert all(x["grpc_health_p99_ms"] >= x["grpc_health_p50_ms"] > 0 for x in serving["rest"])
    assert serving["grpc_stream"] > 0 and serving["ndjson_stream"] > 0
    assert serving["server_peak_rss_mb"] > 50 and train["peak_rss_mb"] > 50
    assert "| REST :sample n=1, 16 client(s) |" in run.stdout  # the table the doc block gets
    assert "gRPC health p50" in run.stdout
