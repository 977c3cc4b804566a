"""The `synth` command line (docs/architecture.md): the top layer, above the library, server and client. Reads flags and files, calls the library.

Subcommands: inspect, train, sample, encode, decode, interpolate, evaluate, fit-prior, tune, serve.
`sample|encode|decode|interpolate --server URL` talk to a running server instead.
Errors from the library are printed as one clear message (exit 2); no tracebacks.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from synth.allocator import keep_freed_memory
from synth.errors import SynthError


def _read_data(path: str, schema, fmt: str | None, skip_bad: bool) -> list:
    from synth.io import read_records

    result = read_records(path, schema.message_class, fmt, skip_bad=skip_bad)
    if result.skipped:
        print(f"skipped {result.skipped} bad record(s) in {path}", file=sys.stderr)
        for v in result.errors[:5]:
            print(f"  {v}", file=sys.stderr)
    return result.records


def cmd_inspect(a: argparse.Namespace) -> int:
    from synth.inspect_tree import render
    from synth.model import Model
    from synth.run_config import load_run_config

    cfg = load_run_config(a.config).model
    records = None
    if a.data:
        from synth.schema.loader import load_schema

        records = _read_data(a.data, load_schema(a.proto, a.message), a.data_format, False)
    print(render(Model.create(a.proto, a.message, records=records, config=cfg)))
    return 0


def cmd_split(a: argparse.Namespace) -> int:
    """A seeded train/test split of a data file, so that evaluation uses rows nobody trained on."""
    import numpy as np

    from synth.io import detect_format, write_records
    from synth.schema.loader import load_schema

    if not 0 < a.test_fraction < 1:
        raise SynthError(f"--test-fraction must be in (0, 1), got {a.test_fraction}")
    schema = load_schema(a.proto, a.message)
    records = _read_data(a.data, schema, a.data_format, a.skip_bad)
    order = np.random.default_rng(a.seed).permutation(len(records))
    n_test = max(1, round(a.test_fraction * len(records)))
    fmt = a.data_format or detect_format(a.data)
    suffix = "".join(Path(a.data).suffixes[-2:]) if a.data.endswith(".gz") else Path(a.data).suffix
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, idx in (("test", order[:n_test]), ("train", order[n_test:])):
        path = out / f"{name}{suffix}"
        write_records([records[i] for i in sorted(idx)], path, schema.message_class, fmt)
        print(f"wrote {len(idx)} records to {path}", file=sys.stderr)
    return 0


def _interrupt_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM stop training with a checkpoint. Installed explicitly:
    a process started in the background by a shell inherits SIGINT as ignored."""
    import signal

    def interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def cmd_train(a: argparse.Namespace) -> int:
    from synth.errors import InvalidArgument
    from synth.run_config import load_run_config
    from synth.train.config import UNBOUNDED_STEPS

    overrides: dict[str, Any] = {"steps": a.steps, "device": a.device, "shuffle_buffer": a.shuffle_buffer,
                                 "stream": True if a.stream else None}
    if a.minutes is not None:
        if not a.minutes > 0:
            raise InvalidArgument(f"--minutes must be > 0, got {a.minutes}")
        overrides["time_budget_s"] = a.minutes * 60.0
        if a.steps is None:
            overrides["steps"] = UNBOUNDED_STEPS  # the clock alone ends the run
    run = load_run_config(a.config, **overrides)
    dist = _join_distributed(a, run.train)
    if not dist.active:
        return _train(a, run, dist)
    from synth.train.distributed import leave_process, teardown

    try:
        code = _train(a, run, dist)
    except BaseException:
        teardown(together=False)
        raise
    teardown(together=True)
    leave_process(code)


def _join_distributed(a: argparse.Namespace, cfg: Any):
    from synth.train.distributed import Dist, setup
    from synth.train.trainer import resolve_device

    return setup(resolve_device(cfg.device)) if a.distributed else Dist()


def _train(a: argparse.Namespace, run: Any, dist: Any) -> int:
    import torch

    from synth.model import Model
    from synth.schema.loader import load_schema
    from synth.train import Trainer
    from synth.train.checkpoint import recover_checkpoint
    from synth.train.validation import explicit_validation, split_validation

    say = (lambda *m: print(*m, file=sys.stderr)) if dist.is_main else (lambda *m: None)
    schema = load_schema(a.proto, a.message)
    test = _read_data(a.test_data, schema, a.data_format, a.skip_bad) if a.test_data else None
    val = info = None
    if a.validation_data:
        val = _read_data(a.validation_data, schema, a.data_format, a.skip_bad)
    if run.train.stream:  # never in memory: one pass for the split and statistics, then epochs
        from synth.train.stream import StreamingSource

        train = StreamingSource(a.data, schema.message_class, run.train, a.data_format, a.skip_bad, dist,
                                hold_out=val is None)
        stats = train.scan()
        if train.report.skipped:
            say(f"skipped {train.report.skipped} bad record(s) in {a.data}")
        n_train = train.n_train
        if val is None:
            val, info = train.validation, train.info
    else:
        stats = None
        train = _read_data(a.data, schema, a.data_format, a.skip_bad)
        if val is None:  # held out before the model is compiled: its data-dependent choices never see it
            train, val, info = split_validation(train, run.train)
        n_train = len(train)
    if a.validation_data:
        info = {**explicit_validation(n_train, len(val)), "path": str(a.validation_data)}
    if info.get("validation_records"):
        say(f"validation: {info['validation_records']} records ({info['source']}), "
            f"training on {info['train_records']}")
    out = Path(a.out)
    if a.resume and dist.is_main and recover_checkpoint(out / "checkpoint") is None:
        raise SynthError(f"--resume: no checkpoint in {out / 'checkpoint'}; run without --resume to start afresh")
    if a.resume:
        trainer = Trainer.resume(out, train, test, run.train, progress=dist.is_main, validation_records=val,
                                 validation_info=info, dist=dist)
        say(f"resuming from step {trainer.step}" + (f" on {dist.world} processes" if dist.active else ""))
    else:
        torch.manual_seed(run.train.seed)
        model = Model(schema, run.model, stats) if stats is not None else \
            Model.create(schema, records=train, config=run.model)
        trainer = Trainer(model, run.train, train, test, out, progress=dist.is_main, run_config=run,
                          validation_records=val, validation_info=info, dist=dist)
    _interrupt_on_signals()
    result = trainer.run()
    if not dist.is_main:
        return 130 if result.stopped else 0
    if result.stopped:
        print(f"stopped at step {result.step}; checkpoint saved in {out / 'checkpoint'} "
              f"(continue with --resume)", file=sys.stderr)
        return 130
    print(f"trained {result.step} steps in {result.wall_s:.0f} s; model saved to {out}", file=sys.stderr)
    _print_tuning(trainer.tuning)
    return 0


def _print_tuning(tuning: dict | None) -> None:
    if not tuning:
        return
    prior, temps = tuning.get("prior") or {}, tuning.get("temperatures") or {}
    leaves, encoding = tuning.get("leaf_temperatures") or {}, tuning.get("encoding") or {}
    closed = tuning.get("closed_pairs") or {}
    parts = []
    if "chosen" in prior:
        parts.append(f"latent_prior_components={prior['chosen']}")
    if "chosen" in leaves:
        parts.append(f"{len(leaves['chosen'])} of {leaves['heads']} heads widened (leaf_temperatures)")
    if "chosen" in closed:
        parts.append(f"{len(closed['chosen'])} closed label pairs")
    if "chosen" in temps:
        parts += [f"{k}={v}" for k, v in temps["chosen"].items()]
    if "chosen" in encoding:
        parts += [f"{k}={v}" for k, v in encoding["chosen"].items()]
    skipped = [f"{name}: {d['skipped']}"
               for name, d in (("prior", prior), ("leaf temperatures", leaves), ("closed pairs", closed),
                               ("temperatures", temps), ("encoding", encoding))
               if "skipped" in d]
    print(f"tuned on {tuning.get('validation_records')} validation records (seed {tuning.get('seed')}): "
          + (", ".join(parts) or "nothing") + ("; " + "; ".join(skipped) if skipped else ""), file=sys.stderr)


def _write(records: list, model_or_cls: Any, fmt: str, output: str | None) -> None:
    from synth.io import write_records

    if output:
        write_records(records, output, model_or_cls, fmt)
        return
    stream = sys.stdout.buffer if fmt == "binpb" else sys.stdout
    write_records(records, stream, model_or_cls, fmt)


def _load(name: str):
    from synth import store

    return store.load(name)


def _client(url: str, token: str | None = None, tls_ca: str | None = None, tls: bool = False):
    """A REST client for an http(s) URL, else a gRPC one; `tls_ca` verifies the server with that CA
    (and turns TLS on for gRPC, as `tls` does with the system's CAs)."""
    try:
        from synth_client import SynthClient
    except ImportError as e:
        raise SynthError("client mode needs the protosynth-client package (pip install ./clients/python)") from e
    import os

    token = token or os.environ.get("SYNTH_TOKEN") or None  # the server's variable, for a client on the same host
    ca = _read_ca(tls_ca) if tls_ca else None
    if url.startswith("http"):
        if ca is None:
            return SynthClient.rest(url, token=token)  # https: the system's CAs (or SSL_CERT_FILE)
        import ssl

        return SynthClient.rest(url, token=token, verify=ssl.create_default_context(cadata=ca.decode("ascii")))
    if ca is None and not tls:
        return SynthClient.grpc(url, token=token)
    import grpc

    return SynthClient.grpc(url, token=token, credentials=grpc.ssl_channel_credentials(root_certificates=ca))


def _read_ca(path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SynthError(f"cannot read --tls-ca {path}: {e.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise SynthError(f"--tls-ca {path} holds no PEM certificate")
    return data


def _jsonl_out(rows: list[dict], output: str | None) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)


def _read_jsonl(path: str) -> list[dict]:
    lines = (sys.stdin if path == "-" else open(path)).read().splitlines()
    return [json.loads(ln) for ln in lines if ln.strip()]


def cmd_sample(a: argparse.Namespace) -> int:
    where = json.loads(a.where) if a.where else None
    if a.server:
        from synth.records import to_message

        client = _client(a.server, a.token, a.tls_ca, a.tls)
        rows = client.sample(a.model, a.n, seed=a.seed, temperature=a.temperature, where=where)
        if a.format == "jsonl":
            _jsonl_out(rows, a.output)
            return 0
        cls = client.get_model(a.model).message_class()
        _write([to_message(r, cls) for r in rows], cls, a.format, a.output)
        return 0
    model = _load(a.model)
    kwargs = {"where": where} if where else {}
    records = model.sample(a.n, seed=a.seed, temperature=a.temperature, greedy=a.greedy, **kwargs)
    _write(records, model.message_class, a.format, a.output)
    return 0


def cmd_encode(a: argparse.Namespace) -> int:
    if a.server:
        latents = _client(a.server, a.token, a.tls_ca, a.tls).encode(a.model, _read_jsonl(a.input))
        rows = [{"mean": l.mean, "std": l.std} for l in latents]
        _jsonl_out(rows, a.output)
        return 0
    model = _load(a.model)
    mu, sigma = model.encode(_read_jsonl(a.input))
    _jsonl_out([{"mean": m.tolist(), "std": s.tolist()} for m, s in zip(mu, sigma)], a.output)
    return 0


def _latents_in(path: str) -> list[list[float]]:
    rows = _read_jsonl(path)
    return [r["mean"] if isinstance(r, dict) else r for r in rows]


def cmd_decode(a: argparse.Namespace) -> int:

    z = _latents_in(a.input)
    if a.server:
        _jsonl_out(_client(a.server, a.token, a.tls_ca, a.tls).decode(a.model, z, temperature=a.temperature, greedy=a.greedy), a.output)
        return 0
    model = _load(a.model)
    records = model.decode(z, temperature=a.temperature, greedy=a.greedy, seed=a.seed)
    _write(records, model.message_class, "jsonl", a.output)
    return 0


def cmd_interpolate(a: argparse.Namespace) -> int:

    pair = _read_jsonl(a.input)
    if len(pair) != 2:
        raise SynthError(f"{a.input}: interpolate needs exactly two records (one per line), got {len(pair)}")
    if a.server:
        res = _client(a.server, a.token, a.tls_ca, a.tls).interpolate(a.model, pair[0], pair[1], steps=a.steps, method=a.method)
        _jsonl_out(res.records, a.output)
        return 0
    model = _load(a.model)
    records, _ = model.interpolate(pair[0], pair[1], a.steps, a.method)
    _write(records, model.message_class, "jsonl", a.output)
    return 0


def cmd_jobs(a: argparse.Namespace) -> int:
    """`synth jobs --server URL`: the caller's jobs, newest first."""
    from synth_contract.results import to_json

    with _client(a.server, a.token, a.tls_ca, a.tls) as client:
        jobs = client.list_jobs()
    for job in jobs:
        if a.json:
            print(json.dumps(to_json(job)))
            continue
        note = f"  {job.error.code}: {job.error.message}" if job.error else ""
        print(f"{job.id}  {job.state:<9}  {job.step:>7}/{job.steps:<7}  {job.name}{note}")
    return 0


def cmd_delete(a: argparse.Namespace) -> int:
    with _client(a.server, a.token, a.tls_ca, a.tls) as client:
        info = client.delete_model(a.model)
    print(f"deleted {info.name} ({info.message})", file=sys.stderr)
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from synth.eval.geo import parse_geo
    from synth.eval.report import evaluate, format_table, html

    model = _load(a.model)
    test = _read_data(a.data, model.schema, a.data_format, a.skip_bad)
    train = _read_data(a.train, model.schema, a.data_format, a.skip_bad) if a.train else None
    geo = parse_geo(a.geo) if a.geo else None
    numeric = a.numeric.split(",") if a.numeric else None
    records: dict = {}
    report = evaluate(model, train, test, n_samples=a.samples, seed=a.seed, category=a.category,
                      numeric=numeric, chains=a.chains, recon_rows=a.recon_rows, geo=geo, records_out=records)
    if a.html:
        Path(a.html).write_text(html(report, model, records["real"], records["generated"]), encoding="utf-8")
        print(f"wrote {a.html}", file=sys.stderr)
    print(json.dumps(report, indent=1) if a.json else format_table(report))
    return 0


def cmd_fit_prior(a: argparse.Namespace) -> int:
    from synth import store

    model = _load(a.model)
    data = _read_data(a.data, model.schema, a.data_format, a.skip_bad)
    model.fit_latent_prior(data, a.components, seed=a.seed)
    out = a.out or str(store.resolve(a.model))
    store.save(model, out)
    print(f"fitted a {model.vae.prior_weights.numel()}-component latent prior; saved to {out}", file=sys.stderr)
    return 0


def cmd_tune(a: argparse.Namespace) -> int:
    import dataclasses

    from synth import store
    from synth.configs import from_dict
    from synth.train.calibrate import end_regime
    from synth.train.config import TrainConfig, TuneConfig
    from synth.train.tune import tune_generation

    model = _load(a.model)
    stored_train = ((model.metadata or {}).get("run_config") or {}).get("train", {})
    stored = stored_train.get("tune")
    try:
        cfg = from_dict(TuneConfig, stored) if isinstance(stored, dict) else TuneConfig()
    except SynthError:  # an older manifest: the defaults
        cfg = TuneConfig()
    if stored_train and "leaf_sampling" not in stored_train:  # trained before it existed: leaves as tuples
        stored_train = {**stored_train, "leaf_sampling": stored_train.get("tuple_sampling", "SS")}
    try:  # the scheduled-sampling regime the run ended in (what the heads are calibrated in)
        regime = end_regime(from_dict(TrainConfig, stored_train), model.reencode)
    except SynthError:
        regime = end_regime(TrainConfig(), model.reencode)
    changes = {k: v for k, v in {"seed": a.seed, "samples": a.samples, "max_seconds": a.max_seconds}.items()
               if v is not None}
    if a.no_prior:
        changes["prior"] = False
    if a.no_temperatures:
        changes["temperatures"] = False
    if a.no_calibrate:
        changes["calibrate"] = False
    if a.no_encoding:
        changes["encoding"] = False
    if a.no_closed_pairs:
        changes["closed_pairs"] = False
    cfg = from_dict(TuneConfig, {**dataclasses.asdict(cfg), **changes})
    val = _read_data(a.validation, model.schema, a.data_format, a.skip_bad)
    train = _read_data(a.train, model.schema, a.data_format, a.skip_bad) if a.train else None
    tuning = tune_generation(model, train, val, cfg, cfg.max_seconds, regime)
    tuning["validation_path"] = str(a.validation)
    # A part left alone keeps the record of the tuning that chose its current values
    previous = model.metadata.get("tuning") or {}
    for part in ("prior", "leaf_temperatures", "closed_pairs", "temperatures", "encoding"):
        if str((tuning.get(part) or {}).get("skipped", "")).startswith("tune.") and part in previous:
            tuning[part]["previous"] = previous[part]
    model.metadata["tuning"] = tuning
    out = a.out or str(store.resolve(a.model))
    store.save(model, out)
    _print_tuning(tuning)
    print(f"saved to {out}", file=sys.stderr)
    if a.json:
        print(json.dumps(tuning, indent=1))
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from synth.server.main import serve
    from synth.server.settings import load_settings, setting_flags

    serve(load_settings(**{name: getattr(a, name) for name, *_ in setting_flags()}))
    return 0


def _serve_parser(sub: Any) -> None:
    # Flags are made from the settings object, so the flags, SYNTH_* variables and docs cannot drift.
    from synth.server.settings import setting_flags

    s = sub.add_parser("serve", help="serve models over REST and gRPC",
                       description="Serve models over REST and gRPC. Every flag can also be set by the "
                                   "SYNTH_* variable named in its help; a flag wins over the variable.")
    for name, flag, kind, help_text in setting_flags():
        if kind is bool:  # a switch; absent is None, so the SYNTH_* variable still applies
            s.add_argument(flag, dest=name, action="store_true", default=None, help=help_text)
        else:
            s.add_argument(flag, dest=name, type=kind, default=None, help=help_text)
    s.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    from synth import __version__

    p = argparse.ArgumentParser(prog="synth", description="protosynth: a VAE compiled from your protobuf schema")
    p.add_argument("--version", action="version", version=f"protosynth {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def data_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("--data-format", choices=["csv", "jsonl", "binpb"], help="default: from the extension")
        s.add_argument("--skip-bad", action="store_true", help="skip bad records and report how many")

    s = sub.add_parser("inspect", help="print the compiled module tree with parameter counts")
    s.add_argument("proto")
    s.add_argument("--message", required=True)
    s.add_argument("--config", help="run.toml ([model] table)")
    s.add_argument("--data", help="training data, for the data-dependent choices")
    s.add_argument("--data-format", choices=["csv", "jsonl", "binpb"])
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("split", help="split a data file into train and test files (seeded)")
    s.add_argument("data")
    s.add_argument("--proto", required=True)
    s.add_argument("--message", required=True)
    s.add_argument("--test-fraction", type=float, default=0.1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out-dir", required=True, help="writes train.<ext> and test.<ext> here")
    data_args(s)
    s.set_defaults(func=cmd_split)

    s = sub.add_parser(
        "train", help="train a model on records of a message",
        description="Train a model. A seeded validation split is held out of --data automatically "
                    "([train] validation_fraction, default 0.1, at most 5,000 rows), unless "
                    "--validation-data gives one; early stopping and the tuning after training (prior "
                    "size, temperatures: [train.tune]) use it alone. --test-data is only logged. "
                    "See docs/training.md.")
    s.add_argument("proto")
    s.add_argument("--message", required=True)
    s.add_argument("--data", required=True, help="training records (the validation split is taken from them)")
    s.add_argument("--validation-data", help="validation records, instead of the automatic split of --data")
    s.add_argument("--test-data", help="held-out records: test loss is logged, never used for any choice")
    s.add_argument("--out", required=True, help="artifact directory")
    s.add_argument("--config", help="run.toml with [model] and [train] tables")
    s.add_argument("--steps", type=int, help="training steps ([train] steps); with --minutes, the first "
                                             "limit reached ends the run")
    s.add_argument("--minutes", type=float,
                   help="time budget in minutes ([train] time_budget_s); without --steps the clock alone "
                        "ends the run, and schedules given as fractions of the run follow elapsed / budget")
    s.add_argument("--device", choices=["auto", "cpu", "cuda"])
    s.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint (the number of "
                                                         "processes may differ from the run that wrote it)")
    s.add_argument("--stream", action="store_true",
                   help="read --data in passes instead of loading it, for files larger than memory "
                        "([train] stream; validation split by a hash of the record index)")
    s.add_argument("--shuffle-buffer", type=int, help="records held to shuffle a --stream ([train] "
                                                      "shuffle_buffer, default 10000)")
    s.add_argument("--distributed", action="store_true",
                   help="data-parallel training, one process per device, under torchrun "
                        "(torchrun --nproc_per_node=N -m synth.train ... adds this flag)")
    data_args(s)
    s.set_defaults(func=cmd_train)

    def model_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("model", help="artifact directory, bundled model name, or (with --server) a served name")
        s.add_argument("--server", help="talk to a running server (http://host:port or host:port for gRPC)")
        s.add_argument("--token", help="API token for --server (default: $SYNTH_TOKEN)")
        s.add_argument("--tls-ca", metavar="PEM", help="CA certificate to verify --server with (a private CA or "
                                                       "self-signed certificate); turns on TLS for a gRPC target")
        s.add_argument("--tls", action="store_true", help="gRPC over TLS, verified with the system's CAs "
                                                          "(an https:// URL needs nothing)")
        s.add_argument("-o", "--output", help="output file (default: stdout)")

    s = sub.add_parser("sample", help="generate fake records")
    model_args(s)
    s.add_argument("-n", type=int, default=10)
    s.add_argument("--seed", type=int)
    s.add_argument("--temperature", type=float, help="default: the model's sample_temperature")
    s.add_argument("--greedy", action="store_true")
    s.add_argument("--where", help='JSON object fixing fields, e.g. \'{"postcode": "05401"}\'')
    s.add_argument("--format", choices=["jsonl", "csv", "binpb"], default="jsonl")
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("encode", help="records (JSONL) -> latents (JSONL of {mean, std})")
    model_args(s)
    s.add_argument("-i", "--input", default="-")
    s.set_defaults(func=cmd_encode)

    s = sub.add_parser("decode", help="latents (JSONL) -> records (JSONL)")
    model_args(s)
    s.add_argument("-i", "--input", default="-")
    s.add_argument("--temperature", type=float, help="default: the model's sample_temperature")
    s.add_argument("--greedy", action="store_true")
    s.add_argument("--seed", type=int)
    s.set_defaults(func=cmd_decode)

    s = sub.add_parser("interpolate", help="two records (JSONL) -> the records between them")
    model_args(s)
    s.add_argument("-i", "--input", default="-")
    s.add_argument("--steps", type=int, default=8)
    s.add_argument("--method", choices=["linear", "slerp"], default="linear")
    s.set_defaults(func=cmd_interpolate)

    def server_args(s: argparse.ArgumentParser) -> None:  # model_args' connection flags, --server required
        s.add_argument("--server", required=True, help="the server (http://host:port or host:port for gRPC)")
        s.add_argument("--token", help="API token (default: $SYNTH_TOKEN)")
        s.add_argument("--tls-ca", metavar="PEM", help="CA certificate to verify --server with")
        s.add_argument("--tls", action="store_true", help="gRPC over TLS, verified with the system's CAs")

    s = sub.add_parser("jobs", help="list a server's training jobs (yours; every job with an admin token)")
    server_args(s)
    s.add_argument("--json", action="store_true", help="one JSON object per job instead of a table")
    s.set_defaults(func=cmd_jobs)

    s = sub.add_parser("delete", help="delete a model from a server's models directory")
    s.add_argument("model", help="the served model's name")
    server_args(s)
    s.set_defaults(func=cmd_delete)

    s = sub.add_parser("evaluate", help="score a model: fidelity, detection, privacy, p-value, reconstruction")
    s.add_argument("model")
    s.add_argument("--data", required=True, help="held-out real data (not trained on)")
    s.add_argument("--train", help="the training data (for copies, DCR, pairs found and the floor)")
    s.add_argument("--samples", type=int, default=10000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--geo", help="p-value fields: group,numeric[,numeric...] (default: postcode,lat,lon "
                                 "when the schema has them)")
    s.add_argument("--category", help=argparse.SUPPRESS)  # older spelling of --geo's group field
    s.add_argument("--numeric", help=argparse.SUPPRESS)
    s.add_argument("--chains", type=int, default=9, help="re-encoding rounds")
    s.add_argument("--recon-rows", type=int, default=10000, help="training rows for the Levenshtein metric")
    s.add_argument("--html", help="also write a self-contained HTML report here")
    s.add_argument("--json", action="store_true")
    data_args(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("fit-prior", help="fit the mixture latent prior used for generation (after training)")
    s.add_argument("model")
    s.add_argument("--data", required=True, help="training data")
    s.add_argument("--components", type=int, default=1024)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="write the updated artifact here (default: in place)")
    data_args(s)
    s.set_defaults(func=cmd_fit_prior)

    s = sub.add_parser("tune", help="choose the prior size, temperatures and encoding of a model on validation data",
                       description="Choose the latent prior's size (by the validation posteriors' likelihood; "
                                   "needs --train), the generation temperatures (by scoring generated "
                                   "records against --validation) and how encode refines latents (by the "
                                   "validation records' reconstruction), as training does automatically. The "
                                   "choices and every candidate's scores are stored in the artifact.")
    s.add_argument("model")
    s.add_argument("--validation", required=True, help="validation records (not trained on, not the test set)")
    s.add_argument("--train", help="the training records (to refit the prior; without it the prior is kept)")
    s.add_argument("--seed", type=int, help="evaluation seed of the choices (default: [train.tune] seed, 1; "
                                            "never 0, the benchmark's)")
    s.add_argument("--samples", type=int, help="generated records per temperature candidate (default 1000)")
    s.add_argument("--max-seconds", type=float, help="wall-time cap (default 300)")
    s.add_argument("--no-prior", action="store_true", help="keep the prior")
    s.add_argument("--no-temperatures", action="store_true", help="keep the temperatures")
    s.add_argument("--no-calibrate", action="store_true", help="keep the leaf temperatures")
    s.add_argument("--no-encoding", action="store_true", help="keep how encode refines latents")
    s.add_argument("--no-closed-pairs", action="store_true",
                   help="keep the closed label pairs (found again only with --train)")
    s.add_argument("--out", help="write the updated artifact here (default: in place)")
    s.add_argument("--json", action="store_true", help="print the tuning record")
    data_args(s)
    s.set_defaults(func=cmd_tune)

    _serve_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # before any tensor: big ones then reuse pages (synth/allocator.py)
    try:
        return args.func(args)
    except SynthError as e:  # the contract's classes: the library's and the client's alike
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
