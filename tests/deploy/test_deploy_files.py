"""deploy/: what can be checked without a container engine or a cluster.

Kubernetes manifests against the API schemas (kubernetes-validate ships them, no
network), the compose file against the compose specification (check-jsonschema's
vendored copy), the Kamailio configuration with `kamailio -c`, the systemd unit with
`systemd-analyze verify` where it exists. Beyond schemas, the files must agree with
the program and with each other: every TELEPHONY_AGENT_* variable they set is a real
setting with a valid value, stop timeouts cover the drain, ports and RTP ranges line
up, and the Dockerfile exposes what the service listens on.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from telephony_agent.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.30"
#: preStop, goodbye and margin a stop timeout must leave beyond drain_timeout_s.
GOODBYE_S = 15


def _yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def _settings_from_env(
    environ: dict[str, str], toml_text: str = "", tmp: Path | None = None
) -> Any:
    """Load settings as `serve` would with these variables (and this file)."""
    path = None
    if toml_text and tmp is not None:
        path = tmp / "agent.toml"
        path.write_text(toml_text, encoding="utf-8")
    return load_settings(path, environ=environ)


# ---------------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("path", sorted(KUBERNETES.glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_match_the_api_schemas(path: Path) -> None:
    validate = pytest.importorskip("kubernetes_validate")
    for document in _yaml_documents(path):
        validate.validate(document, KUBERNETES_VERSION, strict=True)


def _deployment() -> dict[str, Any]:
    (document,) = _yaml_documents(KUBERNETES / "deployment.yaml")
    return document


def test_the_deployment_settings_are_valid_and_its_grace_period_covers_the_drain(
    tmp_path: Path,
) -> None:
    (configmap,) = _yaml_documents(KUBERNETES / "configmap.yaml")
    spec = _deployment()["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    environ = {
        e["name"]: e["value"] for e in container["env"] if e["name"].startswith("TELEPHONY_")
    }
    environ["TELEPHONY_AGENT_SIP_PUBLIC_ADDRESS"] = "198.51.100.7"  # what $(NODE_IP) becomes
    settings = _settings_from_env(environ, configmap["data"]["agent.toml"], tmp_path)
    assert settings.sip.listen == "0.0.0.0:5060"
    assert settings.http.listen.endswith(":8080")
    prestop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert prestop[0] == "sleep"
    budget = int(prestop[1]) + settings.server.drain_timeout_s + GOODBYE_S
    assert spec["terminationGracePeriodSeconds"] >= budget
    assert spec["hostNetwork"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert settings.provider.api_key_file == "/run/secrets/telephony-agent/api-key"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/run/secrets/telephony-agent" in mounts


def test_the_autoscalers_and_the_budget_point_at_the_deployment() -> None:
    deployment = _deployment()
    labels = deployment["spec"]["selector"]["matchLabels"]
    for name in ("hpa.yaml", "hpa-active-calls.yaml"):
        (hpa,) = _yaml_documents(KUBERNETES / name)
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (pdb,) = _yaml_documents(KUBERNETES / "pdb.yaml")
    assert pdb["spec"]["selector"]["matchLabels"] == labels
    (service,) = _yaml_documents(KUBERNETES / "service.yaml")
    assert service["spec"]["selector"] == labels


# ---------------------------------------------------------------------- compose


def test_the_compose_file_matches_the_compose_specification() -> None:
    pytest.importorskip("check_jsonschema")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(DEPLOY / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _resolved_env(environment: dict[str, str]) -> dict[str, str]:
    """Compose's ${NAME:?...} and ${NAME:-default} with a test address for PUBLIC_ADDRESS."""

    def substitute(value: str) -> str:
        return re.sub(
            r"\$\{(\w+)(?::[?-][^}]*)?\}",
            lambda m: "198.51.100.7" if m[1] == "PUBLIC_ADDRESS" else "",
            value,
        )

    return {k: substitute(str(v)) for k, v in environment.items()}


def test_compose_agents_are_valid_distinct_and_listed_in_the_dispatcher() -> None:
    (compose,) = _yaml_documents(DEPLOY / "compose.yaml")
    agents = {name: s for name, s in compose["services"].items() if name.startswith("agent")}
    assert len(agents) >= 2
    listed = re.findall(
        r"^1 sip:[\d.]+:(\d+)", (DEPLOY / "kamailio" / "dispatcher.list").read_text(), re.M
    )
    ranges: list[range] = []
    sip_ports: list[int] = []
    for service in agents.values():
        settings = _settings_from_env(_resolved_env(service["environment"]))
        sip_ports.append(int(settings.sip.listen.rsplit(":", 1)[1]))
        ranges.append(range(settings.rtp.port_min, settings.rtp.port_max + 1))
        grace = int(str(service["stop_grace_period"]).rstrip("s"))
        assert grace >= settings.server.drain_timeout_s + GOODBYE_S
        assert service["network_mode"] == "host"
    assert sorted(int(p) for p in listed) == sorted(sip_ports)
    first, second = ranges[0], ranges[1]
    assert not set(first) & set(second), "the agents' RTP ranges overlap"
    assert 5060 not in sip_ports  # Kamailio has 5060


# ---------------------------------------------------------------------- Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def test_the_dockerfile_builds_a_small_non_root_image_that_exposes_what_serve_listens_on() -> None:
    instructions = _dockerfile()
    words = [word for word, _ in instructions]
    (base,) = [rest for word, rest in instructions if word == "FROM"]
    assert base.startswith("python:3.11") and "slim" in base
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    (healthcheck,) = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    for word, rest in instructions:
        if word == "COPY":
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    settings = _settings_from_env({k: v for k, v in env.items() if k.startswith("TELEPHONY_")})
    (exposed,) = [rest.split() for word, rest in instructions if word == "EXPOSE"]
    sip_port = settings.sip.listen.rsplit(":", 1)[1]
    http_port = settings.http.listen.rsplit(":", 1)[1]
    rtp = f"{settings.rtp.port_min}-{settings.rtp.port_max}/udp"
    for port in (f"{sip_port}/udp", f"{sip_port}/tcp", "5061/tcp", f"{http_port}/tcp", rtp):
        assert port in exposed, port
    assert f"127.0.0.1:{http_port}/healthz" in healthcheck


# ---------------------------------------------------------------------- Kamailio


def test_the_kamailio_configuration_and_list_load() -> None:
    kamailio = shutil.which("kamailio") or (
        "/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None
    )
    if kamailio is None:
        pytest.skip("kamailio is not installed (Debian package kamailio)")
    result = subprocess.run(
        [
            kamailio,
            "-c",
            "-f",
            str(DEPLOY / "kamailio" / "kamailio.cfg"),
            "-A",
            "LISTEN=udp:127.0.0.1:5060",
            "-A",
            "LISTEN_TCP=tcp:127.0.0.1:5060",
            "-A",
            f'DISPATCHER_LIST="{DEPLOY / "kamailio" / "dispatcher.list"}"',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "config file ok" in result.stdout + result.stderr


# ---------------------------------------------------------------------- systemd


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / "telephony-agent.service", encoding="utf-8")
    return parser


def test_the_systemd_unit_stops_after_the_drain_and_does_not_restart_on_bad_config() -> None:
    service = _unit()["Service"]
    example = tomllib.loads((DEPLOY / "agent.example.toml").read_text(encoding="utf-8"))
    drain = float(example["server"]["drain_timeout_s"])
    assert int(service["TimeoutStopSec"]) >= drain + GOODBYE_S
    assert service["KillSignal"] == "SIGTERM"
    assert service["RestartPreventExitStatus"] == "2"
    assert service["ExecStart"].split()[1:3] == ["serve", "--config"]
    assert service["User"] != "root"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (DEPLOY / "systemd" / "telephony-agent.service").read_text(encoding="utf-8")
    # The installed program is not on this machine: point ExecStart at one that is.
    unit = unit.replace("/opt/telephony-agent/bin/telephony-agent", "/bin/true")
    copy = tmp_path / "telephony-agent.service"
    copy.write_text(unit, encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "telephony-agent.service" in line and "Unknown user" not in line
    ]
    assert problems == [], problems
