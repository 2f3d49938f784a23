"""HTTPS on both servers: `parity serve` and `parity serve-models` as real processes with
--tls-cert/--tls-key (a self-signed pair made here), read by httpx, requests (as Feast's remote
online store calls) and tritonclient; plain http and an unknown CA are refused."""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gevent.ssl
import httpx2 as httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import requests
import tritonclient.http as triton
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from tests.conftest import DRIVER_REPO, write_parquet, write_repo
from tests.e2e.test_horizontal import wait_for
from tests.inference.serving_helpers import Affine, TripsModel, free_port

pytestmark = [pytest.mark.slow]

DRIVERS = [1, 2, 3]
X = np.array([[1.0, 2.0], [3.0, -1.0]])
WEIGHTS, BIAS = [2.0, -3.0], 0.5


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def self_signed(folder: Path, name: str = "parity-test") -> Pair:
    """A self-signed certificate for localhost and 127.0.0.1 (its own CA) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    pair = Pair(folder / f"{name}.crt", folder / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pair.key.chmod(0o600)
    return pair


def https_repo(root: Path, now: datetime, extra: str = "") -> Path:
    """The driver repo (SQLite registry and online store), its rows half an hour old."""
    path = write_repo(root, DRIVER_REPO, extra=f"models: {{trusted: true}}\n{extra}")
    write_parquet(
        path / "data" / "driver_stats.parquet",
        {
            "driver_id": pa.array(DRIVERS, pa.int64()),
            "event_timestamp": pa.array(
                [now - timedelta(minutes=30)] * len(DRIVERS), pa.timestamp("us", tz="UTC")
            ),
            "conv_rate": pa.array([d / 10 for d in DRIVERS], pa.float64()),
            "trips": pa.array([d * 7 for d in DRIVERS], pa.int64()),
            "city": pa.array(["x"] * len(DRIVERS), pa.string()),
        },
    )
    return path


def prepare(repo: Path, now: datetime) -> None:
    with FeatureStore(repo) as store:
        store.apply()
        store.materialize(now - timedelta(days=1), now)
        sample = pd.DataFrame({"trips": [1.0, 2.0], "bonus": [0.0, 1.0]})
        store.models.register_model(
            "ranker",
            TripsModel(10.0),
            flavor="pyfunc",
            feature_service="driver_service",
            sample_input=sample,
            alias="champion",
        )
        store.models.register_model(
            "affine", Affine(WEIGHTS, BIAS), flavor="pyfunc", sample_input=X
        )


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def start(kind: str, repo: Path, pair: Pair | None, log: Path, *flags: str) -> Server:
    port = free_port()
    tls = [] if pair is None else ["--tls-cert", str(pair.cert), "--tls-key", str(pair.key)]
    command = [sys.executable, "-m", "parity.cli.main", kind, "--repo", str(repo)]
    command += ["--port", str(port), *tls, *flags]
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, stderr=stderr, stdout=subprocess.DEVNULL)
    return Server(process, port, log)


def wait_ready(server: Server, ca: Path, path: str) -> None:
    def ready() -> bool:
        if server.process.poll() is not None:
            return True
        try:
            return httpx.get(f"{server.url}{path}", verify=client_context(ca), timeout=2).is_success
        except httpx.HTTPError:
            return False

    wait_for(ready, 60)
    assert server.process.poll() is None, server.log.read_text()


def stop(servers: list[Server]) -> None:
    for server in servers:
        if server.process.poll() is None:
            server.process.terminate()
    for server in servers:
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)


def client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@dataclass
class Servers:
    features: Server
    models: Server
    pair: Pair
    other_ca: Pair
    repo: Path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("tls")
    now = datetime.now(UTC).replace(microsecond=0)
    repo = https_repo(root / "repo", now)
    prepare(repo, now)
    pair, other = self_signed(root / "tls"), self_signed(root / "other", "someone-else")
    started: list[Server] = []
    try:
        started.append(start("serve", repo, pair, root / "serve.log"))
        started.append(
            start(
                "serve-models",
                repo,
                pair,
                root / "models.log",
                "-m",
                "ranker@champion",
                "--no-rollout-controller",
            )
        )
        wait_ready(started[0], pair.cert, "/health")
        wait_ready(started[1], pair.cert, "/v2/health/ready")
        yield Servers(started[0], started[1], pair, other, repo)
    finally:
        stop(started)


# --- over HTTPS --------------------------------------------------------------------------------


def test_start_up_lines_say_https(servers: Servers) -> None:
    for server in (servers.features, servers.models):
        assert f"on https://127.0.0.1:{server.port}" in server.log.read_text()


FEAST_BODY = {
    "features": ["driver_stats:trips", "driver_stats:conv_rate"],
    "entities": {"driver_id": [1, 3, 99]},
}


def check_feast_answer(answer: dict[str, Any]) -> None:
    """Feast's response shape, with the values written above (trips = 7 x id, conv = id / 10)."""
    assert answer["metadata"]["feature_names"] == ["driver_id", "trips", "conv_rate"]
    keys, trips, conv = answer["results"]
    assert keys["values"] == [1, 3, 99]
    assert trips["values"] == [7, 21, None]
    assert conv["values"] == [0.1, 0.3, None]
    assert trips["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND"]


def test_features_over_https_with_httpx(servers: Servers) -> None:
    reply = httpx.post(
        f"{servers.features.url}/get-online-features",
        json=FEAST_BODY,
        verify=client_context(servers.pair.cert),
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    check_feast_answer(reply.json())


def test_features_over_https_as_feasts_remote_store_calls(servers: Servers) -> None:
    """Feast's RemoteOnlineStore posts with `requests` and `verify=<its cert option>`."""
    reply = requests.post(
        f"{servers.features.url}/get-online-features",
        json=FEAST_BODY,
        verify=str(servers.pair.cert),
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    check_feast_answer(reply.json())


def test_prediction_over_https(servers: Servers) -> None:
    body = {"entities": {"driver_id": [2, 3], "bonus": [0.5, 1.0]}}
    reply = httpx.post(
        f"{servers.models.url}/v1/models/ranker/predict",
        json=body,
        verify=client_context(servers.pair.cert),
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert (answer["model_version"], answer["predictions"]) == (1, [14 * 10 + 0.5, 21 * 10 + 1.0])


def test_tritonclient_infers_over_https(servers: Servers) -> None:
    client = triton.InferenceServerClient(
        f"127.0.0.1:{servers.models.port}",
        ssl=True,
        ssl_options={"ca_certs": str(servers.pair.cert)},
        ssl_context_factory=gevent.ssl.create_default_context,
    )
    try:
        assert client.is_server_ready()
        tensor = triton.InferInput("input", list(X.shape), "FP64")
        tensor.set_data_from_numpy(X, binary_data=True)
        result = client.infer("affine", [tensor], outputs=[triton.InferRequestedOutput("output")])
        by_hand = [1 * 2 - 2 * 3 + 0.5, 3 * 2 + 3 + 0.5]
        assert result.as_numpy("output").tolist() == pytest.approx(by_hand)
    finally:
        client.close()


# --- Feast's own client (opt-in: only where benchmarks/.feast-venv holds Feast) ----------------

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
FEAST_PYTHON = BENCHMARKS / ".feast-venv" / "bin" / "python"
FEAST_DEFINITIONS = """
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
driver_stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    schema=[Field(name="trips", dtype=Int64), Field(name="conv_rate", dtype=Float64)],
    source=FileSource(name="driver_stats_source", path=PATH, timestamp_field="event_timestamp"),
    online=True,
)
"""


def feast_remote_repo(root: Path, url: str, ca: Path, parquet: Path, auth: str = "") -> Path:
    """A Feast repo whose online store is Parity's feature server at `url`, trusting `ca`."""
    root.mkdir(parents=True)
    (root / "feature_store.yaml").write_text(
        "project: demo\nprovider: local\n"
        "registry:\n  registry_type: file\n  path: data/registry.db\n"
        f"online_store:\n  type: remote\n  path: {url}\n  cert: {ca}\n"
        "offline_store:\n  type: file\nentity_key_serialization_version: 3\n" + auth
    )
    (root / "definitions.py").write_text(FEAST_DEFINITIONS.replace("PATH", repr(str(parquet))))
    return root


def run_feast_client(repo: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`feast apply`, then benchmarks/online_feast_client.py (direct mode) under Feast's Python."""
    env = {**os.environ, "FEAST_USAGE": "False", "PYTHONWARNINGS": "ignore", **(env or {})}
    feast = [str(FEAST_PYTHON), "-m", "feast.cli.cli"]
    done = subprocess.run(
        [*feast, "apply"], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    config = {"repo": str(repo), "refs": FEAST_BODY["features"], "ids": [1, 3, 99]}
    (repo / "client.json").write_text(json.dumps(config))
    client = [str(FEAST_PYTHON), str(BENCHMARKS / "online_feast_client.py")]
    done = subprocess.run(
        [*client, str(repo / "client.json"), str(repo / "out.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer: dict[str, Any] = json.loads((repo / "out.json").read_text())
    return answer


feast_venv = pytest.mark.skipif(
    not FEAST_PYTHON.exists(), reason="Feast is installed only by the benchmarks (.feast-venv)"
)


@feast_venv
def test_feasts_remote_online_store_reads_over_https(servers: Servers, tmp_path: Path) -> None:
    parquet = servers.repo / "data" / "driver_stats.parquet"
    repo = feast_remote_repo(tmp_path / "feast", servers.features.url, servers.pair.cert, parquet)
    out = run_feast_client(repo)
    assert out["error"] == ""
    assert out["values"] == {
        "driver_id": [1, 3, 99],
        "trips": [7, 21, None],
        "conv_rate": [0.1, 0.3, None],
    }


@feast_venv
def test_feasts_remote_online_store_refuses_an_unknown_ca(servers: Servers, tmp_path: Path) -> None:
    parquet = servers.repo / "data" / "driver_stats.parquet"
    wrong = servers.other_ca.cert
    repo = feast_remote_repo(tmp_path / "feast", servers.features.url, wrong, parquet)
    out = run_feast_client(repo)
    assert "CERTIFICATE_VERIFY_FAILED" in out["error"]
    assert out["values"] is None


# --- refused -----------------------------------------------------------------------------------


def test_plain_http_to_the_tls_port_fails(servers: Servers) -> None:
    for server in (servers.features, servers.models):
        with pytest.raises(httpx.HTTPError):
            reply = httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=5)
            pytest.fail(f"plain http got an answer: {reply.status_code}")  # pragma: no cover


def test_a_client_trusting_another_ca_refuses_the_server(servers: Servers) -> None:
    wrong = client_context(servers.other_ca.cert)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{servers.features.url}/health", verify=wrong, timeout=5)
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        requests.get(
            f"{servers.models.url}/v2/health/ready", verify=str(servers.other_ca.cert), timeout=5
        )
    client = triton.InferenceServerClient(
        f"127.0.0.1:{servers.models.port}",
        ssl=True,
        ssl_options={"ca_certs": str(servers.other_ca.cert)},
        ssl_context_factory=gevent.ssl.create_default_context,
    )
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            client.is_server_ready()
    finally:
        client.close()


# --- the options' own refusals (nothing starts) -------------------------------------------------

runner = CliRunner()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pair, Pair]:
    root = tmp_path_factory.mktemp("pairs")
    return self_signed(root / "a", "a"), self_signed(root / "b", "b")


def refusal(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize("kind", ["serve", "serve-models"])
def test_one_tls_option_without_the_other(kind: str, pairs: tuple[Pair, Pair]) -> None:
    a, _ = pairs
    assert "--tls-cert needs --tls-key" in refusal(kind, "--tls-cert", str(a.cert))
    assert "--tls-key needs --tls-cert" in refusal(kind, "--tls-key", str(a.key))


@pytest.mark.parametrize("kind", ["serve", "serve-models"])
def test_unreadable_or_mismatched_tls_files(
    kind: str, pairs: tuple[Pair, Pair], tmp_path: Path
) -> None:
    a, b = pairs
    missing = tmp_path / "missing.key"
    message = refusal(kind, "--tls-cert", str(a.cert), "--tls-key", str(missing))
    assert f"--tls-key {missing}: cannot read it" in message
    message = refusal(kind, "--tls-cert", str(missing), "--tls-key", str(a.key))
    assert f"--tls-cert {missing}: cannot read it" in message
    message = refusal(kind, "--tls-cert", str(a.cert), "--tls-key", str(b.key))
    assert f"--tls-key {b.key} is not the key of --tls-cert {a.cert}" in message
    assert "KEY_VALUES_MISMATCH" in message
    message = refusal(kind, "--tls-cert", str(a.key), "--tls-key", str(a.key))
    assert f"--tls-cert {a.key}: not a PEM certificate" in message
    message = refusal(kind, "--tls-cert", str(a.cert), "--tls-key", str(a.cert))
    assert f"--tls-key {a.cert}: not a PEM private key" in message


def test_an_encrypted_key_is_refused_with_the_fix(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "encrypted.key"
    encryption = serialization.BestAvailableEncryption(b"secret")
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    cert = self_signed(tmp_path).cert
    message = refusal("serve", "--tls-cert", str(cert), "--tls-key", str(path))
    assert f"--tls-key {path}: the key is encrypted; give it unencrypted" in message


# --- auth on, OIDC JWTs, over HTTPS -------------------------------------------------------------

AUDIENCE = "parity-api"


def jwt_for(key: Any, scope: str, audience: str = AUDIENCE) -> str:
    import jwt

    now = int(time.time())
    claims = {"iss": "https://idp.test", "aud": audience, "sub": "svc-42", "scope": scope}
    claims |= {"iat": now, "exp": now + 300}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "idp-1"})


@pytest.fixture(scope="module")
def oidc_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Servers, Any]]:
    from jwt.algorithms import ECAlgorithm

    root = tmp_path_factory.mktemp("oidc")
    now = datetime.now(UTC).replace(microsecond=0)
    idp_key = ec.generate_private_key(ec.SECP256R1())
    settings = (
        "auth:\n  enabled: true\n  oidc:\n    jwks: keys/jwks.json\n"
        f"    audience: {AUDIENCE}\n    issuer: https://idp.test\n"
    )
    repo = https_repo(root / "repo", now, settings)
    public = ECAlgorithm.to_jwk(idp_key.public_key(), as_dict=True)
    (repo / "keys").mkdir()
    (repo / "keys" / "jwks.json").write_text(json.dumps({"keys": [{**public, "kid": "idp-1"}]}))
    prepare(repo, now)
    pair, other = self_signed(root / "tls"), self_signed(root / "other", "someone-else")
    started: list[Server] = []
    try:
        started.append(start("serve", repo, pair, root / "serve.log"))
        flags = ("-m", "ranker@champion", "--no-rollout-controller")
        started.append(start("serve-models", repo, pair, root / "models.log", *flags))
        wait_ready(started[0], pair.cert, "/health")
        wait_ready(started[1], pair.cert, "/v2/health/ready")
        yield Servers(started[0], started[1], pair, other, repo), idp_key
    finally:
        stop(started)


def test_oidc_jwt_over_https_gets_200_and_a_wrong_audience_401(
    oidc_servers: tuple[Servers, Any],
) -> None:
    servers, idp_key = oidc_servers
    verify = client_context(servers.pair.cert)
    url = f"{servers.features.url}/get-online-features"

    def post(token: str | None) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.post(url, json=FEAST_BODY, headers=headers, verify=verify, timeout=10)

    good = post(jwt_for(idp_key, "openid features:read"))
    assert good.status_code == 200, good.text
    check_feast_answer(good.json())
    wrong = jwt_for(idp_key, "features:read", audience="another-app")
    refused = post(wrong)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "wrong audience" in refused.text and wrong not in refused.text
    assert post(None).status_code == 401
    assert post(jwt_for(idp_key, "models:predict")).status_code == 403  # no features:read


def test_oidc_jwt_over_https_predicts_with_the_model_scope(
    oidc_servers: tuple[Servers, Any],
) -> None:
    servers, idp_key = oidc_servers
    body = {"entities": {"driver_id": [1], "bonus": [0.0]}}

    def predict(scope: str) -> httpx.Response:
        return httpx.post(
            f"{servers.models.url}/v1/models/ranker/predict",
            json=body,
            headers={"Authorization": f"Bearer {jwt_for(idp_key, scope)}"},
            verify=client_context(servers.pair.cert),
            timeout=10,
        )

    allowed = predict("models:predict:ranker")
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["predictions"] == [7 * 10 + 0.0]
    assert predict("models:predict:churn").status_code == 403


@feast_venv
def test_feasts_remote_online_store_sends_a_bearer_token_over_https(
    oidc_servers: tuple[Servers, Any], tmp_path: Path
) -> None:
    """Feast's client with `auth: {type: oidc, token_env_var: ...}` sends the JWT as a bearer
    token; without it the server answers 401 and Feast raises."""
    servers, idp_key = oidc_servers
    parquet = servers.repo / "data" / "driver_stats.parquet"
    url, ca = servers.features.url, servers.pair.cert
    auth = "auth:\n  type: oidc\n  token_env_var: PARITY_TOKEN\n"
    repo = feast_remote_repo(tmp_path / "feast", url, ca, parquet, auth)
    out = run_feast_client(repo, {"PARITY_TOKEN": jwt_for(idp_key, "features:read")})
    assert out["error"] == ""
    assert out["values"] == {
        "driver_id": [1, 3, 99],
        "trips": [7, 21, None],
        "conv_rate": [0.1, 0.3, None],
    }
    anonymous = run_feast_client(feast_remote_repo(tmp_path / "anonymous", url, ca, parquet))
    assert anonymous["values"] is None and "401" in anonymous["error"]
