"""SIP over TLS between our `call` command and a deployed `serve`, with real certificates.

Why real processes and certificates: what matters is that `serve` loads a PEM chain,
the client verifies it (name and issuer) before a byte of SIP flows, and the whole
call — INVITE, ACK, BYE — rides the one TLS connection the caller opened.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.peers.agent_process import agent_environment
from tests.peers.conftest import SAMPLE, StartAgent


def _certificate(folder: Path, name: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for `name` (as an IP address SAN) and its key, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(name))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _call(uri: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "telephony_agent", "call", uri, "--play", str(SAMPLE)]
    return subprocess.run(
        [*command, "--transport", "tls", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env=agent_environment(),
        check=False,
    )


def test_a_call_over_tls_with_srtp_is_answered_and_verified(
    start_agent_server: StartAgent, tmp_path: Path
) -> None:
    cert, key = _certificate(tmp_path / "tls")
    agent = start_agent_server(
        sip={
            "transports": "udp+tls",
            "tls_port": 0,
            "tls_certificate": str(cert),
            "tls_key": str(key),
        }
    )
    (listening,) = agent.log_events("sip_listening")
    tls_address = str(listening["tls_address"])
    uri = f"sip:agent@{tls_address};transport=tls"

    result = _call(uri, "--tls-ca", str(cert), "--srtp")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("answered: codec ") and " over SRTP, " in result.stdout
    # Media really flowed both ways under SRTP: the caller measured the agent's answers.
    assert "turn latencies (ms): none" not in result.stdout, result.stdout
    (srtp_on,) = agent.log_events("srtp_on")
    assert srtp_on["suite"] == "AES_CM_128_HMAC_SHA1_80"
    (leg,) = agent.log_events("rtp_leg_ended")
    assert leg["packets_in"] > 100 and leg["malformed"] == 0, leg
    health = agent.wait_health(lambda h: h["completed"] >= 1)
    assert health["answered"] == 1

    # Without the CA the caller refuses the agent's certificate: no call is placed.
    refused = _call(uri)
    assert refused.returncode != 0
    assert "not answered" in refused.stdout, refused.stdout
    assert agent.health()["invites"] == 1


def test_an_unreadable_certificate_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        '[provider]\nname = "local"\n[sip]\ntransports = "udp+tls"\n'
        f'tls_certificate = "{tmp_path / "missing.pem"}"\ntls_key = "{tmp_path / "k.pem"}"\n'
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "telephony_agent",
            "serve",
            "--config",
            str(config),
            "--sip-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=agent_environment(),
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("telephony-agent: error: sip.tls_certificate = "), lines
    assert "Traceback" not in result.stderr
