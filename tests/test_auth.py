"""Access control and TLS (docs/service.md, "Access control and TLS"), on both transports.

Extra servers over one service, each with the same tokens: a strict pair (every
call needs a token), a `public_read` pair, and a TLS pair with a self-signed
certificate made here with openssl. Every mutating call (create job, cancel job)
is tried without a token, with a wrong one and with the right one.
"""
from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from conftest_server import MODEL, build_models_dir, start_http  # noqa: F401 - also puts the client on sys.path
from synth.errors import ConfigError, PermissionDenied, Unauthenticated
from synth.server.auth import AccessPolicy, bearer_token, parse_tokens
from synth.server.settings import ServerSettings, load_settings, setting_flags
from synth.service import Caller, Limits, ModelRegistry, SynthService

ALICE, BOB, ADMIN = "alice-token-0123456789abcdef", "bob-token-0123456789abcdef", "admin-token-0123456789abcd"
WRONG = "not-a-valid-token-0123456789"
TOKENS = [(ALICE, False), (BOB, False), (ADMIN, True)]
NOTE_PROTO = 'syntax = "proto3";\npackage test.notes;\nmessage Note { string text = 1; }\n'
NOTES = [{"text": t} for t in ["hello", "world", "note", "token", "cancel"] * 4]
# Long enough that a job is still queued or running when the test cancels it.
JOB_CONFIG = {"model": {"latent_dim": 8, "char_dim": 8},
              "train": {"steps": 500, "batch_size": 8, "log_every": 100, "eval_every": 500, "eval_records": 8,
                        "device": "cpu"}}


# ----------------------------------------------------------------------------- servers

def _self_signed(directory: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test certificate (Debian: apt-get install -y openssl)")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class Pair:
    """A REST app and a gRPC server over the shared service, with one access policy."""

    def __init__(self, service: SynthService, policy: AccessPolicy, tls: tuple[Path, Path] | None = None):
        from synth.server.grpc.server import create_grpc_server
        from synth.server.rest.app import create_app

        self.tls = tls
        ssl_options = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])} if tls else {}
        self.http_url, self._stop_http = start_http(create_app(service, access=policy), **ssl_options)
        self._grpc, port = create_grpc_server(service, "127.0.0.1:0", max_workers=4, access=policy,
                                              tls=(tls[0].read_bytes(), tls[1].read_bytes()) if tls else None)
        self._grpc.start()
        self.grpc_target = f"{'localhost' if tls else '127.0.0.1'}:{port}"

    def client(self, transport: str, token: str | None = None) -> Any:
        from synth_client import SynthClient

        if transport == "rest":
            verify = ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else True
            return SynthClient.rest(self.http_url, timeout=30, token=token, verify=verify)
        credentials = grpc.ssl_channel_credentials(root_certificates=self.tls[0].read_bytes()) if self.tls else None
        return SynthClient.grpc(self.grpc_target, timeout=30, credentials=credentials, token=token)

    def stop(self) -> None:
        self._stop_http()
        self._grpc.stop(grace=None).wait(5)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("auth")
    limits = Limits(max_sample=200, max_records=50, max_train_steps=500, max_upload_bytes=1 << 20, sample_chunk=16)
    service = SynthService(ModelRegistry(build_models_dir(root), include_bundled=False), limits)
    pairs = {"strict": Pair(service, AccessPolicy.from_tokens(TOKENS)),
             "public": Pair(service, AccessPolicy.from_tokens(TOKENS, public_read=True)),
             "tls": Pair(service, AccessPolicy.from_tokens(TOKENS), tls=_self_signed(root))}
    yield {"service": service, **pairs}
    for job in list(service.jobs._jobs):  # stop the training thread at once
        try:
            service.cancel_job(job, Caller("admin", admin=True))
        except Exception:  # noqa: BLE001 - already finished
            pass
    for pair in pairs.values():
        pair.stop()
    service.close()


def _create(c: Any) -> Any:
    return c.create_job(NOTE_PROTO, "Note", NOTES, config=JOB_CONFIG)


def _cancel(c: Any, job_id: str) -> Any:
    job = c.cancel_job(job_id)
    assert job.cancel_requested or job.state == "cancelled"
    return job


# ----------------------------------------------------------------------------- mutating calls

@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_creating_a_job_needs_the_right_token(secured, transport):
    for pair in (secured["strict"], secured["public"]):  # public_read does not open writes
        for token in (None, WRONG):
            with pair.client(transport, token) as c, pytest.raises(Unauthenticated) as e:
                _create(c)
            assert e.value.code == "unauthenticated"
            assert (e.value.http_status, e.value.grpc_code) in ((401, None), (None, "UNAUTHENTICATED"))
    with secured["strict"].client(transport, ALICE) as c:
        job = _create(c)
        assert job.state in ("queued", "running")
        _cancel(c, job.id)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_cancelling_a_job_needs_the_right_token(secured, transport):
    pair = secured["strict"]
    with pair.client(transport, ALICE) as alice:
        job = _create(alice)
        for token in (None, WRONG):
            with pair.client(transport, token) as c, pytest.raises(Unauthenticated):
                c.cancel_job(job.id)
        with secured["public"].client(transport) as anonymous, pytest.raises(Unauthenticated):
            anonymous.cancel_job(job.id)
        assert alice.get_job(job.id).cancel_requested is False
        _cancel(alice, job.id)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_only_the_creating_token_or_an_admin_may_cancel(secured, transport):
    pair = secured["strict"]
    with pair.client(transport, ALICE) as alice, pair.client(transport, BOB) as bob, \
            pair.client(transport, ADMIN) as admin:
        job = _create(alice)
        with pytest.raises(PermissionDenied) as e:
            bob.cancel_job(job.id)
        assert e.value.code == "permission_denied"
        assert bob.get_job(job.id).cancel_requested is False  # bob may still read it
        _cancel(admin, job.id)
        # An admin's own job: another token may not cancel it either.
        job = _create(admin)
        with pytest.raises(PermissionDenied):
            alice.cancel_job(job.id)
        _cancel(admin, job.id)


def test_rest_401_says_bearer_and_auth_comes_before_lookup(secured):
    url = secured["strict"].http_url
    for method, path in [("POST", "/v1/jobs"), ("POST", "/v1/jobs/nope:cancel"), ("GET", "/v1/jobs/nope"),
                         ("GET", "/v1/models"), ("POST", f"/v1/models/{MODEL}:sample")]:
        for headers in ({}, {"authorization": f"Bearer {WRONG}"}, {"authorization": f"Basic {ALICE}"}):
            r = httpx.request(method, url + path, headers=headers, json={"n": 1}, timeout=30)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"]["code"] == "unauthenticated"
            assert ALICE not in r.text and WRONG not in r.text
    r = httpx.post(url + "/v1/jobs/nope:cancel", headers={"authorization": f"bearer {ALICE}"}, timeout=30)
    assert r.status_code == 404  # a valid token (scheme case-insensitive) reaches the lookup


# ----------------------------------------------------------------------------- reads

@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_reads_need_a_token_unless_public_read(secured, transport):
    with secured["strict"].client(transport) as c:
        for call in (c.list_models, lambda: c.get_model(MODEL), lambda: c.sample(MODEL, 2, seed=1),
                     lambda: c.get_job("nope")):
            with pytest.raises(Unauthenticated):
                call()
    with secured["strict"].client(transport, BOB) as c:
        assert [m.name for m in c.list_models()] == [MODEL]
        rows = c.sample(MODEL, 2, seed=1)
        assert len(c.encode(MODEL, rows)) == 2
    with secured["public"].client(transport) as c:
        assert c.sample(MODEL, 2, seed=1) == rows
        assert len(c.reconstruct(MODEL, rows)) == 2
    with secured["public"].client(transport, WRONG) as c, pytest.raises(Unauthenticated):
        c.list_models()  # a wrong token is refused even where none is needed


def test_rest_map_routes_follow_the_read_rule(secured):
    body = {"n": 5, "seed": 1}
    assert httpx.post(secured["strict"].http_url + f"/v1/models/{MODEL}:map", json=body).status_code == 401
    r = httpx.post(secured["strict"].http_url + f"/v1/models/{MODEL}:map", json=body,
                   headers={"authorization": f"Bearer {ALICE}"}, timeout=30)
    assert r.status_code == 200 and r.text.startswith("<svg")
    assert httpx.post(secured["public"].http_url + f"/v1/models/{MODEL}:map", json=body,
                      timeout=30).status_code == 200


def test_health_docs_and_page_stay_open(secured):
    url = secured["strict"].http_url
    for path in ("/healthz", "/", "/openapi.json", "/docs"):
        assert httpx.get(url + path, timeout=30).status_code == 200, path
    spec = httpx.get(url + "/openapi.json", timeout=30).json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearer"][
            "description"]}
    assert spec["paths"]["/v1/jobs"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(secured["strict"].grpc_target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


# ----------------------------------------------------------------------------- TLS

@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_tls_on_both_transports(secured, transport):
    pair = secured["tls"]
    assert pair.http_url.startswith("https://")
    with pair.client(transport, ALICE) as c:
        assert [m.name for m in c.list_models()] == [MODEL]
        assert len(c.sample(MODEL, 3, seed=2)) == 3
        job = _create(c)
        _cancel(c, job.id)
    with pair.client(transport, WRONG) as c, pytest.raises(Unauthenticated):
        c.list_models()


def test_tls_servers_refuse_plaintext_and_unknown_certificates(secured):
    from synth_client import SynthClient, Unavailable

    pair = secured["tls"]
    with SynthClient.grpc(pair.grpc_target, timeout=5, token=ALICE) as c, pytest.raises(Unavailable):
        c.list_models()
    with SynthClient.rest(pair.http_url, timeout=5, token=ALICE) as c, pytest.raises(Unavailable):
        c.list_models()  # the system CAs do not trust the self-signed certificate
    with pytest.raises(httpx.TransportError):
        httpx.get(pair.http_url.replace("https://", "http://") + "/healthz", timeout=5)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_cli_client_verifies_the_server_with_tls_ca(secured, transport, capsys, tmp_path):
    from synth.cli import main

    pair = secured["tls"]
    target = pair.http_url if transport == "rest" else pair.grpc_target
    argv = ["sample", MODEL, "--server", target, "--token", ALICE, "-n", "3", "--seed", "1"]
    assert main([*argv, "--tls-ca", str(pair.tls[0])]) == 0
    assert len([json.loads(line) for line in capsys.readouterr().out.splitlines()]) == 3
    assert main(argv) == 2  # REST: the system's CAs refuse it; gRPC: plaintext against a TLS port
    assert "error:" in capsys.readouterr().err
    if transport == "grpc":  # TLS with the system's CAs: the self-signed certificate is refused
        assert main([*argv, "--tls"]) == 2
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    assert main([*argv, "--tls-ca", str(not_pem)]) == 2
    assert "no PEM certificate" in capsys.readouterr().err


# ----------------------------------------------------------------------------- settings and policy

def test_token_file_syntax_and_errors(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# the team\n{ALICE}\n\nadmin:{ADMIN}\n  {BOB}  \n")
    policy = load_settings(token_file=tokens).access_policy()
    assert policy.enabled and not policy.public_read
    assert policy.identify(ADMIN).admin and not policy.identify(ALICE).admin
    assert policy.identify(BOB) is not None and policy.identify(WRONG) is None
    assert policy.identify(ALICE).id != policy.identify(BOB).id and ALICE not in repr(policy)
    tokens.write_text(f"{ALICE}\nshort\nadmin:has space {BOB}\n")
    with pytest.raises(ConfigError) as e:
        load_settings(token_file=tokens)
    assert [v.path for v in e.value.violations] == ["token_file:2", "token_file:3"]
    assert "short" not in str(e.value) and BOB not in str(e.value)
    tokens.write_text("# nobody yet\n")
    with pytest.raises(ConfigError, match="token"):
        load_settings(token_file=tokens)
    with pytest.raises(ConfigError) as e:
        load_settings(token_file=tmp_path / "missing")
    assert [v.path for v in e.value.violations] == ["token_file"]


def test_token_and_public_read_from_the_environment(monkeypatch):
    for name in [n for n, *_ in setting_flags()]:
        monkeypatch.delenv(f"SYNTH_{name.upper()}", raising=False)
    s = load_settings()
    assert not s.access_policy().enabled and s.tls() is None  # open and plaintext by default
    monkeypatch.setenv("SYNTH_TOKEN", f"admin:{ADMIN}")
    monkeypatch.setenv("SYNTH_PUBLIC_READ", "true")
    s = load_settings()
    policy = s.access_policy()
    assert policy.public_read and policy.identify(ADMIN).admin
    assert ADMIN not in repr(s) and ADMIN not in str(s.model_dump())
    assert load_settings(public_read=None).public_read is True  # the flag was not given


def test_tls_settings_go_together(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError) as e:
        load_settings(tls_cert=cert)
    assert [v.path for v in e.value.violations] == ["tls_key"]
    with pytest.raises(ConfigError) as e:
        load_settings(tls_cert=cert, tls_key=tmp_path / "missing.pem")
    assert [v.path for v in e.value.violations] == ["tls_key"]
    assert load_settings(tls_cert=cert, tls_key=cert).tls() == (cert, cert)


def test_public_read_is_a_switch_of_synth_serve():
    flags = {name: kind for name, _, kind, _ in setting_flags()}
    assert flags["public_read"] is bool and flags["token_file"] is str
    from synth.cli import build_parser

    args = build_parser().parse_args(["serve", "--public-read", "--token-file", "t"])
    assert args.public_read is True and args.token_file == "t"
    assert build_parser().parse_args(["serve"]).public_read is None  # so SYNTH_PUBLIC_READ still applies
    assert "public_read" in ServerSettings.model_fields


def test_policy_rules():
    open_policy = AccessPolicy()
    assert open_policy.authenticate(None, write=True) is None  # no tokens: everything allowed
    strict = AccessPolicy.from_tokens(TOKENS)
    with pytest.raises(Unauthenticated):
        strict.authenticate(None, write=False)
    assert strict.authenticate(ALICE, write=True).id == strict.identify(ALICE).id
    public = AccessPolicy.from_tokens(TOKENS, public_read=True)
    assert public.authenticate(None, write=False) is None
    with pytest.raises(Unauthenticated):
        public.authenticate(None, write=True)
    assert [bearer_token(v) for v in ("Bearer abc", "bearer  abc ", "Basic abc", "Bearer", None)] == \
        ["abc", "abc", None, None, None]
    assert parse_tokens(f"admin:{ADMIN}", "x") == ([(ADMIN, True)], [])


def test_an_upload_without_a_valid_token_is_refused_before_its_body_is_read(secured):
    """The headers of a 60 MB upload are sent and its body is not: the 401 comes at once, so an
    unauthenticated client cannot make the server receive and spool an upload."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(secured["strict"].http_url)
    for auth in ("", f"authorization: Bearer {WRONG}\r\n"):
        with socket.create_connection((u.hostname, u.port), timeout=10) as s:
            s.sendall((f"POST /v1/jobs HTTP/1.1\r\nhost: {u.hostname}\r\n{auth}"
                       "content-type: multipart/form-data; boundary=xyz\r\n"
                       f"content-length: {60 << 20}\r\n\r\n--xyz\r\n").encode())
            s.settimeout(10)  # without the gate the server waits for the rest of the body
            chunks = [s.recv(65536)]
            while chunks[-1]:  # the answer says `connection: close`
                chunks.append(s.recv(65536))
            head = b"".join(chunks).decode("latin-1")
        assert head.startswith("HTTP/1.1 401"), head
        assert "www-authenticate: bearer" in head.lower()
        assert '"unauthenticated"' in head
