"""Outbound calls from a deployed `serve` to SIPp callees: answered, busy, unanswered,
behind digest auth — through `POST /calls` and the `dial` command.

Why real processes: the far end is a third-party UAS whose answers (180, 486, 401,
487 after our CANCEL) drive every branch, and the outcome must be visible where an
operator looks: the HTTP answer, the call record and `dial --wait`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.peers.agent_process import AgentServer, agent_environment, free_port
from tests.peers.conftest import StartAgent
from tests.peers.test_sipp import SCENARIOS, SIPP_TIMEOUT_S

ACCOUNT = """
[[registrations]]
name = "trunk"
registrar = "sip:127.0.0.1:{port}"
username = "trunkuser"
password_env = "TRUNK_PASSWORD"
register = false
"""


class Callee:
    """A SIPp UAS running one scenario in the background on its own port."""

    def __init__(self, scenario: str, workdir: Path, speech_ulaw: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(SCENARIOS / scenario, workdir / scenario)
        shutil.copy(speech_ulaw, workdir / "speech_8k.ulaw")
        self.port = free_port()
        self.workdir = workdir
        self.process = subprocess.Popen(
            [
                "sipp",
                "-sf",
                scenario,
                "-i",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-mp",
                str(free_port(span=4)),
                "-m",
                "1",
                "-timeout",
                f"{SIPP_TIMEOUT_S}s",
                "-timeout_error",
                "-trace_err",
                "-nostdin",
            ],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.3)  # listening

    def finish(self) -> int:
        try:
            self.process.communicate(timeout=SIPP_TIMEOUT_S + 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
        return int(self.process.returncode)

    def errors(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.workdir.glob("*errors.log"))


def _post(agent: AgentServer, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{agent.http_port}/calls",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _record(agent: AgentServer, call_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The call's record once it has ended."""
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{agent.http_port}/calls/{call_id}"
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                record = json.loads(response.read())
        except urllib.error.HTTPError:
            record = {}
        if record.get("ended_at"):
            return record
        time.sleep(0.2)
    raise AssertionError(f"call {call_id} did not end: {record}")


def test_an_answered_outbound_call_talks_with_the_callee(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    agent = start_agent_server()
    callee = Callee("uas_answer.xml", tmp_path / "callee", speech_ulaw)
    status, answer = _post(
        agent, {"to": f"sip:bob@127.0.0.1:{callee.port}", "variables": {"name": "Bob"}}
    )
    assert status == 201, answer
    assert callee.finish() == 0, callee.errors()
    record = _record(agent, answer["id"])
    assert record["direction"] == "outbound" and record["answered_at"]
    assert record["to"] == "bob"
    assert record["end_reason"] == "caller_hangup"  # the callee hung up
    said = [(line["speaker"], line["text"]) for line in record["transcript"]]
    assert any(s == "agent" and t.startswith("Echo") for s, t in said), said


@pytest.mark.parametrize(
    ("scenario", "reason"), [("uas_busy.xml", "busy"), ("uas_no_answer.xml", "no_answer")]
)
def test_unanswered_outbound_calls_say_why(
    start_agent_server: StartAgent,
    tmp_path: Path,
    speech_ulaw: Path,
    scenario: str,
    reason: str,
) -> None:
    agent = start_agent_server(sip={"ring_timeout_s": 2.0})
    callee = Callee(scenario, tmp_path / "callee", speech_ulaw)
    status, answer = _post(agent, {"to": f"sip:bob@127.0.0.1:{callee.port}"})
    assert status == 201, answer
    assert callee.finish() == 0, callee.errors()
    record = _record(agent, answer["id"])
    assert (record["end_reason"], record["answered_at"]) == (reason, None)
    assert agent.health()["active_calls"] == 0


def test_dial_through_an_account_answers_the_trunks_challenge(
    start_agent_server: StartAgent,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    speech_ulaw: Path,
) -> None:
    monkeypatch.setenv("TRUNK_PASSWORD", "trunkpw")
    callee = Callee("uas_auth.xml", tmp_path / "callee", speech_ulaw)
    agent = start_agent_server(extra_toml=ACCOUNT.format(port=callee.port))
    command = [
        sys.executable,
        "-m",
        "telephony_agent",
        "dial",
        "+15550100",
        "--registration",
        "trunk",
        "--server",
        f"127.0.0.1:{agent.http_port}",
        "--wait",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=agent_environment(), check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("placed: "), result.stdout
    assert "ended: caller_hangup (answered" in result.stdout, result.stdout
    assert callee.finish() == 0, callee.errors()
    assert "trunkpw" not in agent.log_text()


def test_placing_calls_is_refused_with_reasons(start_agent_server: StartAgent) -> None:
    agent = start_agent_server(sip={"max_outbound_cps": 1.0})
    status, answer = _post(agent, {"to": "+15550100"})
    assert status == 400 and "needs a registration" in answer["error"], answer
    status, answer = _post(agent, {"to": "sip:bob@127.0.0.1:9", "registration": "nope"})
    assert status == 404, answer
    status, answer = _post(agent, {"to": "sip:bob@127.0.0.1:9", "colour": "red"})
    assert status == 400 and "colour" in answer["error"], answer
    status, answer = _post(agent, {"to": "sip:bob@127.0.0.1:9", "profile": "missing"})
    assert status == 404, answer
    # A burst over max_outbound_cps is refused, not queued.
    codes = [_post(agent, {"to": "sip:bob@127.0.0.1:9"})[0] for _ in range(3)]
    assert 429 in codes, codes


AMD_PROFILES = """
[[profiles]]
name = "reminders"
numbers = ["never-dialled"]
instructions = "You remind people of their appointments."
greeting = "Hello, this is Riverside Dental with a reminder."
amd = "detect"
amd_action = "hangup"
"""


def _ulaw_file(tmp_path: Path, name: str, audio_8k: Any) -> Path:
    from telephony_agent.audio.g711 import ulaw_encode

    path = tmp_path / f"{name}.ulaw"
    path.write_bytes(ulaw_encode(audio_8k).tobytes())
    return path


@pytest.mark.parametrize("who", ["machine", "human"])
def test_answering_machine_detection_on_a_real_outbound_call(
    start_agent_server: StartAgent, tmp_path: Path, who: str
) -> None:
    import numpy as np

    from tests.amd_corpus import HUMAN_ANSWERS, MACHINE_GREETINGS, speak

    text = MACHINE_GREETINGS[0] if who == "machine" else HUMAN_ANSWERS[1]
    voice = speak(text, "en-us", 170, tmp_path)
    # What the callee's side plays from the answer on: the greeting, then silence.
    audio = np.concatenate([np.zeros(2400, np.int16), voice, np.zeros(8000 * 4, np.int16)])
    agent = start_agent_server(extra_toml=AMD_PROFILES)
    callee = Callee("uas_answer.xml", tmp_path / "callee", _ulaw_file(tmp_path, who, audio))
    status, answer = _post(
        agent, {"to": f"sip:bob@127.0.0.1:{callee.port}", "profile": "reminders"}
    )
    assert status == 201, answer
    callee.finish()  # a machine is hung up on: SIPp then sees our BYE, not its own
    record = _record(agent, answer["id"])
    said = [(line["speaker"], line["text"]) for line in record["transcript"]]
    verdicts = [t for s, t in said if s == "system" and "answering-machine detection" in t]
    assert len(verdicts) == 1, said
    if who == "machine":
        assert "machine after" in verdicts[0]
        assert record["end_reason"] == "answering_machine", record["end_reason"]
        # Nothing the model said was played to the machine.
        assert not [t for s, t in said if s == "agent"], said
    else:
        assert "human after" in verdicts[0]
        assert record["end_reason"] == "caller_hangup", record["end_reason"]
