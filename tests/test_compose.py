"""docker-compose.yml: valid with the secrets set, refused without them, profiles as documented, and
the API reachable only through the TLS proxy (deploy/caddy/Caddyfile)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from service.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SECRETS = {"POSTGRES_PASSWORD": "test-only-password", "FACEGATE_ADMIN_KEY": "fg_test_only_key"}
CADDYFILE = REPO / "deploy" / "caddy" / "Caddyfile"
API_SERVICES = ("api", "api-gpu")

pytestmark = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose is not installed"
)


def compose(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    # an empty env file, so that a developer's .env never makes the test pass or fail
    (tmp_path / "empty.env").write_text("")
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in SECRETS and not k.startswith(("FACEGATE_", "COMPOSE_"))
    }
    cmd = [
        "docker-compose",
        "-f",
        str(REPO / "docker-compose.yml"),
        "--env-file",
        str(tmp_path / "empty.env"),
        *args,
    ]
    return subprocess.run(cmd, env={**base, **env}, capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_config_is_valid_with_the_secrets(tmp_path: Path) -> None:
    result = compose(tmp_path, "config", **SECRETS)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert (
        SECRETS["FACEGATE_ADMIN_KEY"] in text and f"facegate:{SECRETS['POSTGRES_PASSWORD']}@db:5432" in text
    )
    assert "condition: service_healthy" in text and "healthcheck" in text
    services = compose(tmp_path, "config", "--services", **SECRETS).stdout.split()
    assert sorted(services) == ["api", "api-gpu", "db", "proxy", "retrain"]
    # the retrain and gpu services only run with their profile
    assert text.count("profiles:") == 2 and "- retrain" in text and "- gpu" in text
    volumes = compose(tmp_path, "config", "--volumes", **SECRETS).stdout.split()
    assert sorted(volumes) == ["accepted", "caddy_config", "caddy_data", "models", "pgdata"]


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_config_fails_without_a_secret(tmp_path: Path, missing: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}
    result = compose(tmp_path, "config", **env)
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


def test_retrain_service_runs_the_retraining_job(tmp_path: Path) -> None:
    text = compose(tmp_path, "--profile", "retrain", "config", **SECRETS).stdout
    assert "facegate-train" in text and "retrain" in text and "/app/models" in text


def _services(tmp_path: Path, *args: str) -> dict:
    result = compose(tmp_path, *args, "config", **SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def _upstream() -> tuple[str, str]:
    """The service and port of the Caddyfile's reverse_proxy (its default, {$FACEGATE_UPSTREAM:...})."""
    match = re.search(
        r"^\s*reverse_proxy\s+\{\$FACEGATE_UPSTREAM:([\w-]+):(\d+)\}", CADDYFILE.read_text(), re.M
    )
    assert match, "the Caddyfile proxies to {$FACEGATE_UPSTREAM:<service>:<port>}"
    return match.group(1), match.group(2)


def test_the_api_is_reachable_only_through_the_tls_proxy(tmp_path: Path) -> None:
    services = _services(tmp_path, "--profile", "gpu")
    for name in API_SERVICES:  # on the compose network only
        assert "ports" not in services[name], f"{name} publishes a port"
        assert [str(p) for p in services[name]["expose"]] == ["8000"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")
    published = {(int(p["target"]), p.get("protocol", "tcp")): int(p["published"]) for p in proxy["ports"]}
    assert published[(443, "tcp")] == 443 and published[(80, "tcp")] == 80
    mounts = {v.split(":")[1]: v.split(":")[0] for v in proxy["volumes"]}
    assert Path(mounts["/etc/caddy/Caddyfile"]) == CADDYFILE and CADDYFILE.is_file()
    assert "/etc/caddy/certs" in mounts and "/data" in mounts  # own certificates; Caddy's certificates and CA
    # the Caddyfile's target is the API service, on the port it exposes, and compose passes the same
    service, port = _upstream()
    assert service == "api" and port in [str(p) for p in services[service]["expose"]]
    assert proxy["environment"]["FACEGATE_UPSTREAM"] == f"{service}:{port}"
    assert proxy["environment"]["FACEGATE_TLS"] == "internal"
    assert "api" in proxy["depends_on"]


def test_the_api_believes_forwarded_for_from_the_proxy_network_only(tmp_path: Path) -> None:
    for name, service in _services(tmp_path, "--profile", "gpu").items():
        if name not in API_SERVICES:
            continue
        trusted = service["environment"]["FACEGATE_TRUSTED_PROXIES"]
        assert Settings(trusted_proxies=trusted).trusted_proxies == trusted  # parses as networks
        assert "172.16.0.0/12" in trusted  # where Docker places compose networks by default


def test_the_certificate_source_comes_from_the_environment(tmp_path: Path) -> None:
    own = "/etc/caddy/certs/cert.pem /etc/caddy/certs/key.pem"
    result = compose(tmp_path, "config", FACEGATE_SITE="door.example.org", FACEGATE_TLS=own, **SECRETS)
    proxy = yaml.safe_load(result.stdout)["services"]["proxy"]
    assert proxy["environment"]["FACEGATE_SITE"] == "door.example.org"
    assert proxy["environment"]["FACEGATE_TLS"] == own
    text = CADDYFILE.read_text()
    assert "{$FACEGATE_SITE:localhost} {" in text and "tls {$FACEGATE_TLS:internal}" in text


CADDY_ENVS = {
    "internal CA": {},
    "ACME": {"FACEGATE_SITE": "door.example.org", "FACEGATE_TLS": "ops@example.org"},
    "own certificate": {"FACEGATE_SITE": "door.example.org", "FACEGATE_TLS": "{own}"},
}


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed (apt-get install caddy)")
@pytest.mark.parametrize("variant", sorted(CADDY_ENVS))
def test_caddy_accepts_the_caddyfile(tmp_path: Path, variant: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_")}
    env.update(
        HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "cfg")
    )
    for name, value in CADDY_ENVS[variant].items():
        env[name] = value
    if env.get("FACEGATE_TLS") == "{own}":
        cert, key = _self_signed(tmp_path, "door.example.org")
        env["FACEGATE_TLS"] = f"{cert} {key}"
    cmd = ["caddy", "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0 and "Valid configuration" in result.stdout + result.stderr, result.stderr
    adapted = subprocess.run(
        [*cmd[:1], "adapt", *cmd[2:]], env=env, capture_output=True, text=True, timeout=60
    )
    assert '"dial":"api:8000"' in adapted.stdout.replace(" ", "")


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
