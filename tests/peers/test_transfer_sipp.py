"""Transfers against SIPp: REFER taken and followed to its outcome, a busy target told to
the model, and a REFER refused with 405 replaced by a bridge of our own or a message.

Why real processes: the caller's side is a third-party SIP stack that answers the
REFER, sends the NOTIFY sipfrag progress itself, or refuses it; a bridge puts a second
one on the other end. What the agent did with it must show where an operator looks:
the call record, and the relay's counts in the log.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from telephony_agent.audio.g711 import alaw_encode, ulaw_decode

from .conftest import StartAgent
from .test_dial import Callee
from .test_sipp import run_sipp

pytestmark = pytest.mark.skipif(
    shutil.which("sipp") is None,
    reason="sipp is not installed (Debian/Ubuntu package sip-tester; .ci/run installs it)",
)

SALES = "sip:sales@127.0.0.1:{port}"


def _script(tmp_path: Path, *turns: dict[str, Any]) -> dict[str, Any]:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(list(turns)), encoding="utf-8")
    return {"behaviour": "script", "script": str(path)}


def _transfer(target: str) -> dict[str, Any]:
    return {
        "say": "One moment, I am putting you through.",
        "tone_ms": 400,
        "function_calls": [{"name": "transfer_call", "arguments": {"target": target}}],
    }


def _profile(**keys: str) -> str:
    lines = ['[[profiles]]\nname = "desk"\ndefault = true\ninstructions = "The front desk."\n']
    lines += [f"{key} = {value}\n" for key, value in keys.items()]
    return "".join(lines)


def _only_record(agent: Any, timeout_s: float = 20.0) -> dict[str, Any]:
    """The one call's record once it has ended."""
    base = f"http://127.0.0.1:{agent.http_port}/calls"
    deadline = time.monotonic() + timeout_s
    calls: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}?limit=5", timeout=5) as response:
            calls = json.loads(response.read())
        if len(calls) == 1 and calls[0].get("ended_at"):
            with urllib.request.urlopen(f"{base}/{calls[0]['id']}", timeout=5) as response:
                record: dict[str, Any] = json.loads(response.read())
            return record
        time.sleep(0.2)
    raise AssertionError(f"no single ended call: {calls}")


def _lines(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(line["speaker"], line["text"]) for line in record["transcript"]]


def _tool_output(record: dict[str, Any]) -> dict[str, Any]:
    (tool,) = [t for t in record["tools"] if t["name"] == "transfer_call"]
    output: dict[str, Any] = json.loads(tool["output"])
    return output


def test_a_transfer_the_callers_side_completes_ends_our_call(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    agent = start_agent_server(local=_script(tmp_path, _transfer("sip:operator@127.0.0.1")))
    result = run_sipp(agent, "refer_accept.xml", tmp_path / "caller", speech_ulaw)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    record = _only_record(agent)
    assert (record["end_reason"], record["ended_by"]) == ("transferred", "transfer")
    assert ("system", "[transferred to sip:operator@127.0.0.1]") in _lines(record)
    assert _tool_output(record) == {"ok": True}
    (outcome,) = agent.log_events("transfer_outcome")
    assert (outcome["ok"], outcome["status"]) == (True, 200)


def test_a_busy_target_is_told_to_the_model_and_the_call_goes_on(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    local = _script(
        tmp_path,
        _transfer("sip:sales@127.0.0.1"),
        {"say": "Sales is busy. Can I help you instead?", "tone_ms": 1200},
    )
    agent = start_agent_server(local=local)
    result = run_sipp(agent, "refer_busy.xml", tmp_path / "caller", speech_ulaw)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    record = _only_record(agent)
    assert record["end_reason"] == "caller_hangup"  # nobody hung up on the caller
    output = _tool_output(record)
    assert output["ok"] is False and "failed: the line is busy" in output["error"]
    lines = _lines(record)
    failed = lines.index(("system", "[transfer to sip:sales@127.0.0.1 failed: busy]"))
    # The agent spoke again after the failure, and the caller heard it to the end.
    assert ("agent", "Sales is busy. Can I help you instead?") in lines[failed:]


def test_a_refused_refer_falls_back_to_a_bridge_and_the_targets_bye_ends_both(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    target_dir = tmp_path / "target"
    target_dir.mkdir()
    speech = ulaw_decode(speech_ulaw.read_bytes())
    (target_dir / "speech_8k.alaw").write_bytes(alaw_encode(speech).tobytes())
    target = Callee("uas_answer_pcma.xml", target_dir, speech_ulaw)
    agent = start_agent_server(
        _profile(
            transfer_targets=f'{{ sales = "{SALES.format(port=target.port)}" }}',
            transfer_fallback='"bridge"',
        ),
        local=_script(tmp_path, _transfer("sales")),
    )
    result = run_sipp(
        agent, "refer_refused.xml", tmp_path / "caller", speech_ulaw, extra=("-rtp_echo",)
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert target.finish() == 0, target.errors()
    (fallback,) = agent.log_events("transfer_fallback")
    assert (fallback["fallback"], fallback["status"]) == ("bridge", 405)
    (relayed,) = agent.log_events("relay_ended")
    assert relayed["ended_by"] == "b"  # the target hung up first...
    assert relayed["frames_b_to_a"] >= 300 and relayed["frames_a_to_b"] >= 300, relayed
    # The caller hears at most two frames of silence between the agent and the target.
    assert relayed["handover_gap_ms"] <= 40, relayed
    # ...after its 3.3 s of speech went to the caller, and came back (the caller echoes).
    assert relayed["voiced_b_to_a"] >= 100, relayed
    assert relayed["voiced_a_to_b"] >= 100, relayed
    record = _only_record(agent)
    assert (record["end_reason"], record["ended_by"]) == ("transferred", "transfer")
    assert _tool_output(record) == {"ok": True, "mode": "bridge"}
    bridged = [t for s, t in _lines(record) if s == "system" and t.startswith("[bridged to")]
    assert len(bridged) == 1 and bridged[0].endswith("target hung up]"), bridged
    seconds = float(bridged[0].split(" for ")[1].split(" s;")[0])
    assert 5.0 <= seconds <= 12.0, bridged
    assert agent.health()["active_calls"] == 0


def test_a_refused_refer_falls_back_to_a_message_and_the_agent_hangs_up(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    message = "Please call sales directly on 555 0100."
    local = _script(
        tmp_path,
        _transfer("sip:sales@127.0.0.1"),
        {
            "say": message,
            "tone_ms": 1000,
            "function_calls": [{"name": "end_call", "arguments": {}}],
        },
    )
    agent = start_agent_server(
        _profile(transfer_fallback='"message"', transfer_message=json.dumps(message)),
        local=local,
    )
    result = run_sipp(agent, "refer_refused.xml", tmp_path / "caller", speech_ulaw)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    record = _only_record(agent)
    output = _tool_output(record)
    assert "the phone system cannot transfer calls" in output["error"]
    assert message in output["instructions"]
    assert ("agent", message) in _lines(record)
    assert record["ended_by"] == "agent"


def test_a_bridge_to_a_busy_target_is_told_to_the_model_like_a_failed_refer(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    target = Callee("uas_busy.xml", tmp_path / "target", speech_ulaw)
    said = "Sales is busy, so I will end the call now."
    local = _script(
        tmp_path,
        _transfer("sales"),
        {"say": said, "tone_ms": 1000, "function_calls": [{"name": "end_call", "arguments": {}}]},
    )
    agent = start_agent_server(
        _profile(
            transfer_targets=f'{{ sales = "{SALES.format(port=target.port)}" }}',
            transfer_fallback='"bridge"',
        ),
        local=local,
    )
    result = run_sipp(agent, "refer_refused.xml", tmp_path / "caller", speech_ulaw)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert target.finish() == 0, target.errors()
    record = _only_record(agent)
    sales = SALES.format(port=target.port)
    assert _tool_output(record) == {
        "ok": False,
        "error": f"the transfer to {sales} failed: the line is busy",
    }
    lines = _lines(record)
    failed = lines.index(("system", f"[transfer to {sales} failed: busy]"))
    assert ("agent", said) in lines[failed:]
    assert agent.log_events("relay_ended") == []


def test_the_callers_bye_during_a_bridge_hangs_up_the_target(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    target = Callee("uas_answer_until_bye.xml", tmp_path / "target", speech_ulaw)
    agent = start_agent_server(
        _profile(
            transfer_mode='"bridge"',
            transfer_targets=f'{{ sales = "{SALES.format(port=target.port)}" }}',
        ),
        local=_script(tmp_path, _transfer("sales")),
    )
    # The caller talks and hangs up 6 s after the answer, in the middle of the bridge.
    result = run_sipp(agent, "basic_call.xml", tmp_path / "caller", speech_ulaw)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert target.finish() == 0, target.errors()
    # transfer_mode = "bridge": no REFER was sent at all.
    assert agent.log_events("refer_answered") == []
    (relayed,) = agent.log_events("relay_ended")
    assert relayed["ended_by"] == "a" and relayed["voiced_b_to_a"] >= 50, relayed
    record = _only_record(agent)
    bridged = [t for s, t in _lines(record) if s == "system" and t.startswith("[bridged to")]
    assert len(bridged) == 1 and bridged[0].endswith("caller hung up]"), bridged
    assert agent.health()["active_calls"] == 0


def test_a_caller_who_hangs_up_while_the_target_rings_cancels_the_bridge(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    target = Callee("uas_no_answer.xml", tmp_path / "target", speech_ulaw)
    agent = start_agent_server(
        _profile(
            transfer_mode='"bridge"',
            transfer_targets=f'{{ sales = "{SALES.format(port=target.port)}" }}',
        ),
        local=_script(tmp_path, _transfer("sales")),
    )
    # The caller hangs up 6 s after the answer; the target rings for up to 30 s.
    result = run_sipp(agent, "basic_call.xml", tmp_path / "caller", speech_ulaw)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert target.finish() == 0, target.errors()  # it got our CANCEL
    (cancelled,) = agent.log_events("transfer_target_cancelled")
    assert cancelled["why"] == "transfer_abandoned"
    assert agent.log_events("relay_ended") == []
    assert _only_record(agent)["end_reason"] == "caller_hangup"
