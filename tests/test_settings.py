"""Server settings: flags beat SYNTH_* variables beat defaults; every bad value is reported at once."""
from __future__ import annotations

import subprocess
import sys

import pytest

from synth.errors import ConfigError
from synth.server.settings import ServerSettings, load_settings, setting_flags
from synth.service import Limits


def test_defaults_match_the_service_limits(monkeypatch):
    for name in [n for n, *_ in setting_flags()]:
        monkeypatch.delenv(f"SYNTH_{name.upper()}", raising=False)
    s = load_settings()
    assert (s.host, s.http_port, s.grpc_port, s.device) == ("127.0.0.1", 8000, 50051, "auto")
    assert s.limits() == Limits()


def test_environment_then_flags(monkeypatch):
    monkeypatch.setenv("SYNTH_HTTP_PORT", "9001")
    monkeypatch.setenv("SYNTH_MAX_SAMPLE", "77")
    s = load_settings()
    assert s.http_port == 9001 and s.limits().max_sample == 77
    s = load_settings(http_port=9002, max_sample=None)  # None: the flag was not given
    assert s.http_port == 9002 and s.limits().max_sample == 77


def test_every_problem_is_reported_with_its_name(monkeypatch):
    monkeypatch.setenv("SYNTH_GRPC_PORT", "not-a-port")
    with pytest.raises(ConfigError) as e:
        load_settings(http_port=70000, device="tpu", max_sample=0)
    paths = {v.path for v in e.value.violations}
    assert paths == {"http_port", "grpc_port", "device", "max_sample"}


def test_unknown_setting_is_refused():
    with pytest.raises(ConfigError) as e:
        load_settings(max_smaple=3)
    assert [v.path for v in e.value.violations] == ["max_smaple"]


def test_serve_help_lists_every_setting_with_its_variable():
    out = subprocess.run([sys.executable, "-m", "synth.cli", "serve", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for name in ServerSettings.model_fields:
        assert "--" + name.replace("_", "-") in out
        assert f"SYNTH_{name.upper()}" in out.replace("\n", " ").replace("  ", " ") or \
            f"SYNTH_{name.upper()}" in out


def test_the_encodings_gradient_steps_are_a_setting():
    assert load_settings().limits().encode_refine_steps is None  # each model's own
    assert load_settings(encode_refine_steps=0).limits().encode_refine_steps == 0
    with pytest.raises(ConfigError) as e:
        load_settings(encode_refine_steps=-1)
    assert [v.path for v in e.value.violations] == ["encode_refine_steps"]


def test_serve_refuses_bad_settings_before_starting(monkeypatch):
    proc = subprocess.run([sys.executable, "-m", "synth.server", "--http-port", "-5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "http_port" in proc.stderr and "Traceback" not in proc.stderr


def test_stream_chunk_defaults_follow_the_device(monkeypatch):
    """1,024 records per chunk on the CPU (the size of its model calls), 8,192 on a GPU (where
    a model call of 1,024 rows costs about as much as one of 8,192); an explicit value wins on both."""
    from synth.server.settings import GPU_SAMPLE_CHUNK

    monkeypatch.delenv("SYNTH_SAMPLE_CHUNK", raising=False)
    assert load_settings(device="cpu").limits().sample_chunk == Limits.sample_chunk == 1024
    assert load_settings(device="cuda").limits().sample_chunk == GPU_SAMPLE_CHUNK == 8192
    assert load_settings(device="cuda", sample_chunk=64).limits().sample_chunk == 64
    monkeypatch.setenv("SYNTH_SAMPLE_CHUNK", "100")
    assert load_settings(device="cuda").limits().sample_chunk == 100
