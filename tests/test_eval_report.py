"""compare_records (the model-free contract), `synth evaluate` end to end, and its HTML in a real browser."""
from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

from schemas import ADDRESS_PROTO, NESTED_PROTO, address_records, nested_records
from synth.cli import main
from synth.eval.compare import TOP_LEVEL_KEYS, compare_records
from synth.schema.loader import load_schema
from synth.schema.tree import build_tree

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def address_tree():
    return build_tree(load_schema(ADDRESS_PROTO, "Address").descriptor)


def test_compare_records_contract_and_floor():
    tree = address_tree()
    train, real, gen = address_records(300, seed=0), address_records(150, seed=1), address_records(150, seed=2)
    r = compare_records(tree, real, gen, train, seed=0)
    assert tuple(r) == TOP_LEVEL_KEYS
    json.dumps(r, allow_nan=False)  # strict JSON: NaN became null
    assert r["rows"] == {"real": 150, "generated": 150, "train": 300}
    assert r["geo"]["category"] == "postcode" and r["geo"]["numeric"] == ["lat", "lon"]  # automatic
    s = r["summary"]
    assert 0.3 < s["detection_auc"] < 0.7 and 0.3 < s["detection_auc_floor"] < 0.7
    assert s["copies"] == 0.0 and 0.35 < s["dcr_share"] < 0.65
    pairs = {(p["a"], p["b"]) for p in r["pairs"]["pairs"]}
    assert ("street", "postcode") in pairs and ("city", "postcode") in pairs
    city_zip = next(p for p in r["pairs"]["pairs"] if (p["a"], p["b"]) == ("city", "postcode"))
    assert city_zip["generated"] == city_zip["real"] == 1.0  # the fixture ties each city to one zip
    assert r == compare_records(tree, real, gen, train, seed=0) | {"wall_s": r["wall_s"]}


def test_compare_records_catches_a_copier_and_a_shuffler():
    tree = address_tree()
    train, real = address_records(300, seed=0), address_records(300, seed=1)
    copier = compare_records(tree, real, train[:300], train, seed=0)["summary"]
    assert copier["copies"] == 1.0 and copier["dcr_share"] > 0.9 and copier["copies_floor"] == 0.0
    rng = random.Random(0)
    cities = [r["city"] for r in real]
    rng.shuffle(cities)
    shuffled = [dict(r, city=c) for r, c in zip(address_records(300, seed=2), cities)]
    s = compare_records(tree, real, shuffled, train, seed=0)["summary"]
    assert s["mean_tv"] < 0.1 and s["association_mean_abs_diff"] > 0.1 and s["detection_auc"] > 0.7


def test_compare_records_without_train_and_with_explicit_geo():
    tree = address_tree()
    r = compare_records(tree, address_records(60, seed=1), address_records(60, seed=2),
                        geo=("city", ["lat", "lon"]))
    assert "needs" in r["privacy"] and "needs" in r["pairs"] and "needs" in r["floor"]
    assert r["geo"]["category"] == "city" and r["geo"]["fitted_on"] == "data"
    assert r["summary"]["copies"] is None and r["summary"]["p_mean"] is not None


def test_compare_records_on_nested_schema_without_geo():
    tree = build_tree(load_schema(NESTED_PROTO, "Customer").descriptor)
    r = compare_records(tree, nested_records(40), nested_records(40)[::-1], nested_records(40))
    assert r["geo"] is None
    by = {e["column"]: e for e in r["marginals"]}
    assert by["items#count"]["metric"] == "tv" and by["items#count"]["value"] == 0.0
    assert by["home#present"]["metric"] == "rate_diff" and by["home.lat"]["metric"] == "ks"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("evalcli")
    proto = d / "shop.proto"
    proto.write_text(NESTED_PROTO)
    rows = nested_records(120)
    for i, r in enumerate(rows):  # some variety in the optional message and the repeats
        if i % 5 == 0:
            r.pop("home")
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:80]))
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[80:]))
    (d / "run.toml").write_text("[model]\nlatent_dim = 8\nchar_dim = 4\n\n[train]\nbatch_size = 16\n"
                                "eval_every = 0\ncheckpoint_every = 0\nlog_every = 5\n")
    assert main(["train", str(proto), "--message", "Customer", "--data", str(d / "train.jsonl"),
                 "--out", str(d / "model"), "--config", str(d / "run.toml"), "--steps", "3"]) == 0
    return {"dir": d, "model": d / "model", "train": d / "train.jsonl", "test": d / "test.jsonl"}


def test_cli_evaluate_json_and_html(trained, capsys):
    html_path = trained["dir"] / "report.html"
    capsys.readouterr()
    code = main(["evaluate", str(trained["model"]), "--data", str(trained["test"]), "--train", str(trained["train"]),
                 "--samples", "60", "--chains", "1", "--recon-rows", "20", "--json", "--html", str(html_path)])
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    c = r["comparison"]
    assert tuple(c) == TOP_LEVEL_KEYS and c["rows"] == {"real": 40, "generated": 60, "train": 80}
    assert c["detection"]["auc"] is not None and c["floor"]["detection"]["auc"] is not None
    assert "dcr" in c["privacy"] and "share" in c["privacy"]["dcr"]
    paired = c["privacy"]["dcr_paired"]
    assert paired["seeds"] == 5 and c["summary"]["dcr_excess"] == paired["excess_mean"]
    assert paired["excess_sd"] >= 0 and 0 <= paired["floor_mean"] <= 1
    assert {"levenshtein_per_char", "loss", "posterior", "memorization"} <= set(r)
    # reconstruction of held-out rows too (issue 8's target), field by field
    held = r["levenshtein_per_char_heldout"]
    assert set(held) == set(r["levenshtein_per_char"]) and all(0 <= v < 10 for v in held.values())
    # and every leaf column's: categories exact, numbers in units of their spread
    cols = r["reconstruction_heldout"]
    assert set(cols) == set(r["reconstruction"]) and {"name", "status", "home.lat", "items#count"} <= set(cols)
    assert cols["status"]["kind"] == "category" and 0 <= cols["status"]["exact"] <= 1
    assert "median_abs_error_sd" in cols["home.lat"] and all(0 <= c["error"] <= 1 for c in cols.values())
    from synth.eval.report import format_table
    table = format_table(r)
    assert "Levenshtein per character (reconstruction of train rows; of held-out rows)" in table
    assert "DCR share minus floor (0), paired" in table and "over 5 seeds" in table
    assert "reconstruction by leaf column" in table and "held-out" in table
    assert "pvalue" not in r  # no geo fields in this schema
    html = html_path.read_text()
    assert html.count("<svg") >= 5 and "Association difference" in html
    assert "<script" not in html and "<link" not in html and 'src="http' not in html


def test_cli_evaluate_table_without_train(trained, capsys):
    capsys.readouterr()
    code = main(["evaluate", str(trained["model"]), "--data", str(trained["test"]), "--samples", "40",
                 "--chains", "1", "--recon-rows", "10"])
    out = capsys.readouterr().out
    assert code == 0
    assert "detection AUC" in out and "needs --train" in out and "Levenshtein" in out
    assert "of held-out rows" not in out  # without --train the data rows are the only ones


def test_html_report_renders_in_headless_chromium(trained, tmp_path, capsys):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` (apt-get install -y chromium); `make test` installs it")
    html_path, png = tmp_path / "r.html", tmp_path / "r.png"
    assert main(["evaluate", str(trained["model"]), "--data", str(trained["test"]), "--train", str(trained["train"]),
                 "--samples", "60", "--chains", "1", "--recon-rows", "10", "--html", str(html_path)]) == 0
    subprocess.run([CHROMIUM, *CHROMIUM_ARGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
                    "--window-size=1280,1600", html_path.resolve().as_uri()], check=True, timeout=60,
                   capture_output=True)
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[:2] == (1600, 1280)
    colours = {tuple(p) for p in img[::4, ::4].reshape(-1, 3)}
    assert len(colours) > 50  # text, bars in two colours, axes: not a blank page
    ink = (img.sum(axis=2) < 600).mean()
    assert 0.01 < ink < 0.6
