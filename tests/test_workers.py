"""`serve --workers K`: each worker's ports and RTP slice, the restart backoff, and the
command line a worker is started with."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from telephony_agent.cli import build_parser
from telephony_agent.commands.serve_workers import worker_command
from telephony_agent.config import load_settings
from telephony_agent.errors import ConfigError
from telephony_agent.workers import RestartBackoff, worker_instance, worker_settings


def test_each_worker_gets_the_next_ports_and_its_own_even_rtp_slice() -> None:
    settings = load_settings(
        None,
        environ={},
        overrides={
            "sip": {"listen": "0.0.0.0:5071", "tls_port": 5081},
            "http": {"listen": "127.0.0.1:8081"},
            "rtp": {"port_min": 20001, "port_max": 20999},
        },
    )
    workers = [worker_settings(settings, index, 3) for index in range(3)]
    assert [w.sip.listen for w in workers] == ["0.0.0.0:5071", "0.0.0.0:5072", "0.0.0.0:5073"]
    assert [w.sip.tls_port for w in workers] == [5081, 5082, 5083]
    assert [w.http.listen for w in workers] == [
        "127.0.0.1:8081",
        "127.0.0.1:8082",
        "127.0.0.1:8083",
    ]
    slices = [(w.rtp.port_min, w.rtp.port_max) for w in workers]
    assert slices == [(20002, 20333), (20334, 20665), (20666, 20997)]
    assert all(low % 2 == 0 and (high - low + 1) % 2 == 0 for low, high in slices)
    # Everything else is the one settings file.
    assert {w.sip.max_calls for w in workers} == {settings.sip.max_calls}


def test_any_free_port_stays_any_free_port() -> None:
    settings = load_settings(
        None, environ={}, overrides={"sip": {"listen": "127.0.0.1:0", "tls_port": 0}}
    )
    second = worker_settings(settings, 1, 2)
    assert (second.sip.listen, second.sip.tls_port, second.local.port) == ("127.0.0.1:0", 0, 0)


@pytest.mark.parametrize(
    ("count", "index", "rtp", "wanted"),
    [
        (0, 0, (20000, 20999), "--workers 0: expected 1 to 64"),
        (65, 0, (20000, 20999), "--workers 65"),
        (2, 2, (20000, 20999), "--worker 2: expected 0 to 1"),
        (4, 0, (20000, 20010), "expected at least 16 ports for 4 workers"),
    ],
)
def test_impossible_plans_are_one_line_naming_the_value(
    count: int, index: int, rtp: tuple[int, int], wanted: str
) -> None:
    settings = load_settings(
        None, environ={}, overrides={"rtp": {"port_min": rtp[0], "port_max": rtp[1]}}
    )
    with pytest.raises(ConfigError) as caught:
        worker_settings(settings, index, count)
    assert wanted in str(caught.value) and "\n" not in str(caught.value)


def test_a_port_past_65535_is_refused() -> None:
    settings = load_settings(None, environ={}, overrides={"sip": {"listen": "0.0.0.0:65535"}})
    with pytest.raises(ConfigError) as caught:
        worker_settings(settings, 1, 2)
    assert str(caught.value).startswith("sip.listen port 65535: expected at most 65534")


def test_the_records_instance_names_the_worker() -> None:
    assert worker_instance("host-a", None) == "host-a"
    assert worker_instance("host-a", 3) == "host-a/worker-3"


def test_restarts_back_off_in_a_crash_loop_and_reset_after_a_stable_run() -> None:
    backoff = RestartBackoff(first_s=1.0, max_s=8.0, stable_s=60.0)
    assert [backoff.delay(ran_s=0.5) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff.delay(ran_s=120.0) == 1.0
    assert backoff.delay(ran_s=2.0) == 2.0


def test_a_worker_is_started_with_the_parents_options_and_its_index(tmp_path: Path) -> None:
    args: argparse.Namespace = build_parser().parse_args(
        [
            "serve",
            "--config",
            str(tmp_path / "a.toml"),
            "--sip-listen",
            "0.0.0.0:5071",
            "--workers",
            "2",
        ]
    )
    command = worker_command(args, 1, 2)
    assert command[:4] == [sys.executable, "-m", "telephony_agent", "serve"]
    assert command[4:] == [
        "--config", str(tmp_path / "a.toml"),
        "--sip-listen", "0.0.0.0:5071",
        "--workers", "2",
        "--worker", "1",
    ]  # fmt: skip
    assert build_parser().parse_args(command[3:]).worker == 1


def test_the_parent_of_workers_does_not_load_the_call_stack() -> None:
    """It holds no call: the SIP, media and WebRTC stack stay in the workers."""
    probe = (
        "import sys; import telephony_agent.commands.serve_workers; "
        "print(sorted(m for m in ('aiortc', 'av', 'telephony_agent.commands.serve', "
        "'telephony_agent.server.sip_server') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
