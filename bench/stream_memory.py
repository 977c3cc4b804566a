"""Peak memory of streamed training: a 2 GB file against a 20 MB one (docs/training.md, "Input larger than memory").

Both files repeat the real Vermont rows (/work/shared/data/vermont/addresses.csv, the
paper's data) as JSON Lines until they reach their size. Each is trained on by
`synth train --stream` in its own process, the same few hundred steps; the peak resident
set size of that process (wait4's ru_maxrss) is the figure. Streaming holds a bounded
number of records (shuffle buffer, validation split, evaluation sample), so the peak
must not grow with the file: the check is that the big file's peak stays within 10 %
of the small one's. The files go to --dir (default /tmp) and are deleted afterwards.

    python bench/stream_memory.py                      # 20 MB and 2 GB, 300 steps, writes the doc block
    python bench/stream_memory.py --big-mb 200 --no-doc  # a quicker look
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.doc import cpu_name, replace_block  # noqa: E402

SOURCE = Path("/work/shared/data/vermont/addresses.csv")
PROTO = ROOT / "protos/examples/address.proto"
MESSAGE = "synth.examples.Address"
CONFIG = """
[model]
latent_dim = 64
[train]
steps = {steps}
batch_size = {batch}
eval_every = 0
log_every = 100
checkpoint_every = 0
shuffle_buffer = 10000
device = "cpu"
[train.tune]
enabled = false
"""


def vermont_lines() -> list[str]:
    """The real rows as JSON Lines (lower-case field names, floats for lat/lon, empty cells left out)."""
    out = []
    with open(SOURCE, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rec = {k.lower(): (float(v) if k in ("LAT", "LON") else v) for k, v in row.items() if v != ""}
            out.append(json.dumps(rec, separators=(",", ":")) + "\n")
    return out


def make_file(path: Path, megabytes: float, lines: list[str]) -> int:
    """Repeat the rows until the file holds `megabytes`; returns the number of records."""
    target, size, n = int(megabytes * 2**20), 0, 0
    block = "".join(lines).encode()
    with open(path, "wb") as f:
        while size + len(block) <= target:
            f.write(block)
            size, n = size + len(block), n + len(lines)
        for line in lines:  # the remainder, row by row
            b = line.encode()
            if size + len(b) > target:
                break
            f.write(b)
            size, n = size + len(b), n + 1
    return n


def train(data: Path, out: Path, config: Path, threads: int) -> float:
    """Wall seconds of one `synth train --stream` process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "synth.cli", "train", str(PROTO), "--message", MESSAGE, "--data", str(data),
           "--config", str(config), "--out", str(out), "--stream"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate()  # stderr drained first: the child must not block on a full pipe
    wall = time.time() - t0
    if proc.returncode:
        raise SystemExit(f"training on {data.name} failed:\n{err[-2000:]}")
    return wall


def measure(data: Path, out: Path, config: Path, threads: int) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one training run, started by a wrapper process
    whose only child it is: RUSAGE_CHILDREN's peak is then that run's alone."""
    code = ("import resource, sys, json; sys.path.insert(0, %r); from bench.stream_memory import train; "
            "from pathlib import Path; w = train(Path(%r), Path(%r), Path(%r), %d); "
            "print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, w]))"
            % (str(ROOT), str(data), str(out), str(config), threads))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if res.returncode:
        raise SystemExit(res.stderr[-3000:])
    peak, wall = json.loads(res.stdout.strip().splitlines()[-1])
    return peak, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small-mb", type=float, default=20)
    p.add_argument("--big-mb", type=float, default=2048)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dir", default="/tmp")
    p.add_argument("--no-doc", action="store_true")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stream-memory-", dir=a.dir))
    try:
        lines = vermont_lines()
        config = work / "run.toml"
        config.write_text(CONFIG.format(steps=a.steps, batch=a.batch))
        rows = []
        for name, mb in (("small", a.small_mb), ("big", a.big_mb)):
            data = work / f"{name}.jsonl"
            n = make_file(data, mb, lines)
            size = data.stat().st_size
            peak, wall = measure(data, work / f"model-{name}", config, a.threads)
            data.unlink()  # the big file must not outlive its run
            rows.append((name, size, n, peak, wall))
            print(f"{name}: {size / 2**20:,.0f} MiB, {n:,} records: peak RSS {peak:,.0f} MiB, {wall:,.0f} s",
                  file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = rows[1][3] / rows[0][3]
    table = ["| file | size | records | peak RSS | wall (both passes + training) |", "|---|---|---|---|---|"]
    table += [f"| {name} | {size / 2**20:,.0f} MiB | {n:,} | {peak:,.0f} MiB | {wall:,.0f} s |"
              for name, size, n, peak, wall in rows]
    verdict = "flat (within 10 %)" if ratio <= 1.10 else "NOT flat (over 10 %)"
    body = "\n".join([
        f"Hardware: {cpu_name()}; torch threads {a.threads}. Command: `python bench/stream_memory.py "
        f"--small-mb {a.small_mb:g} --big-mb {a.big_mb:g} --steps {a.steps} --batch {a.batch}`.",
        "",
        f"`synth train --stream` on JSON Lines of the real Vermont rows repeated to each size; "
        f"{a.steps} steps of {a.batch} records, latent_dim 64, shuffle buffer 10,000, the default "
        f"validation split (hash of the record index, at most 5,000 records), tuning off. Peak RSS is "
        f"the training process's ru_maxrss.",
        "",
        *table,
        "",
        f"Big / small peak RSS: {ratio:.3f}: {verdict}. The wall time is mostly the first pass "
        f"(parsing every record for the fit statistics and the split).",
    ])
    print(body)
    if not a.no_doc:
        replace_block("stream_memory", "Streaming training: memory against file size", body)
    if ratio > 1.10:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
