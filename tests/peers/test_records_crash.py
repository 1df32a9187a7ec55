"""A deployed `serve` killed mid-call keeps every completed turn, and recordings repair.

Why a real SIGKILL: the promise is about a process that dies without any chance to
flush — the records must already be in the database and the WAV headers on disk must be
usable (or repairable at the next start).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

from tests.peers.agent_process import AgentServer, agent_environment, free_port, start_agent
from tests.peers.test_sipp import SCENARIOS

CALLS = 3
SETTINGS: dict[str, dict[str, Any]] = {
    "records": {"record": True},
    "local": {"behaviour": "echo"},
}


def _sipp_in_background(
    agent: AgentServer, workdir: Path, speech_ulaw: Path
) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCENARIOS / "long_call.xml", workdir / "long_call.xml")
    shutil.copy(speech_ulaw, workdir / "speech_8k.ulaw")
    return subprocess.Popen(
        [
            "sipp",
            f"127.0.0.1:{agent.sip_port}",
            "-sf",
            "long_call.xml",
            "-m",
            str(CALLS),
            "-l",
            str(CALLS),
            "-r",
            "10",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-mp",
            str(free_port(span=4 * CALLS)),
            "-timeout",
            "60s",
            "-nostdin",
        ],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _agent_lines(agent: AgentServer) -> list[dict[str, Any]]:
    return [r for r in agent.log_events("transcript") if r.get("speaker") == "agent"]


def _calls(workdir: Path) -> list[dict[str, Any]]:
    """`calls list` then `calls show` for each, as a user would run them."""
    listing: list[dict[str, Any]] = _cli_json(workdir, "list")
    return [_cli_json(workdir, "show", str(call["id"])) for call in listing]


def _cli_json(workdir: Path, *args: str) -> Any:
    command = [sys.executable, "-m", "telephony_agent", "calls", *args]
    result = subprocess.run(
        [*command, "--json", "--config", "agent.toml"],
        cwd=workdir,
        env=agent_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_sigkill_mid_call_loses_no_completed_turn(tmp_path: Path, speech_ulaw: Path) -> None:
    workdir = tmp_path / "agent"
    agent = start_agent(workdir, SETTINGS)
    sipp = _sipp_in_background(agent, tmp_path / "sipp", speech_ulaw)
    try:
        # Every call has finished at least one turn (the agent's echo was heard to its
        # end), and is still on the line: the scenario stays long after its first turn.
        deadline = time.monotonic() + 40
        while len(_agent_lines(agent)) < CALLS:
            assert time.monotonic() < deadline, agent.log_tail()
            assert agent.process.poll() is None, agent.log_tail()
            time.sleep(0.1)
        time.sleep(0.5)
        assert agent.health()["active_calls"] == CALLS
        agent.process.send_signal(signal.SIGKILL)
        agent.process.wait(10)
    finally:
        sipp.kill()
        sipp.wait(10)

    # The next start closes what the dead process left open and repairs its recordings.
    again = start_agent(workdir, SETTINGS)
    try:
        calls = _calls(workdir)
    finally:
        assert again.stop() == 0, again.log_tail()
    assert len(calls) == CALLS, calls
    for call in calls:
        assert (call["end_reason"], call["ended_by"]) == ("crashed", "crash"), call
        assert call["answered_at"] is not None
        turns = call["turns"]
        assert isinstance(turns, list) and len(turns) >= 1, call
        agent_lines = [t for t in call["transcript"] if t["speaker"] == "agent"]
        assert agent_lines and agent_lines[0]["text"].startswith("Echo of"), call
        assert call["recording_status"] == "partial", call
        with wave.open(str(workdir / str(call["recording"]))) as wav:
            assert wav.getnchannels() == 2
            assert wav.getnframes() >= 8000 * 3  # at least the first turn, 3 s at 8 kHz
    assert os.path.isdir(workdir / "telephony-agent-data")
