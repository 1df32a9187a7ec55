"""Records and recordings of real calls: SIP and browser, every way a call can end."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from numpy.typing import NDArray

from telephony_agent.audio.g711 import ulaw_decode, ulaw_encode
from telephony_agent.records import open_reader
from tests.call.helpers import sample_speech
from tests.http.support import wait_until
from tests.switchboard.support import Rig, running_rig

PLAIN = '[agent]\ninstructions = "You are the front desk."\n'


def _record(rig: Rig, tmp_path: Path) -> list[dict[str, Any]]:
    reader = open_reader(f"sqlite:///{tmp_path / 'data' / 'calls.db'}")
    try:
        calls = reader.list_calls(limit=50)
        return [reader.get_call(str(c["id"])) or {} for c in calls]
    finally:
        reader.close()


def _script(tmp_path: Path, turns: list[dict[str, Any]]) -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(turns))
    return str(path)


def _speech(seconds: float = 2.0) -> NDArray[np.int16]:
    speech = sample_speech(16000)[: int(seconds * 16000)]
    return np.concatenate([speech, np.zeros(16000, np.int16)])


async def test_a_sip_call_leaves_a_whole_record(tmp_path: Path) -> None:
    async with running_rig(tmp_path, PLAIN, keep=True, local={"behaviour": "echo"}) as rig:
        result = await rig.call("frontdesk", _speech(), tail_s=3.0)
        assert result.answered
        await wait_until(lambda: len(rig.heard.ended) == 1)
        await rig.flushed()
        (call,) = _record(rig, tmp_path)
        live = rig.heard.started[0]
    assert call["id"] == live.id
    assert call["sip_call_id"] == live.request.external_id
    assert (call["kind"], call["direction"], call["from"], call["to"]) == (
        "sip",
        "inbound",
        "caller",
        "frontdesk",
    )
    assert (call["profile"], call["provider"], call["codec"]) == ("default", "local", "PCMU")
    assert call["answered_at"] and call["ended_at"]
    assert (call["end_reason"], call["ended_by"]) == ("caller_hangup", "caller")
    transcript = call["transcript"]
    assert isinstance(transcript, list)
    speakers = [line["speaker"] for line in transcript]
    assert "caller" in speakers and "agent" in speakers
    agent = next(line for line in transcript if line["speaker"] == "agent")
    assert agent["text"].startswith("Echo of") and agent["start_ms"] < agent["end_ms"]
    assert isinstance(call["turns"], list) and len(call["turns"]) == 1
    assert call["recording"] is None


async def test_an_agent_end_call_and_its_tool_call_are_kept(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        [
            {
                "say": "Goodbye.",
                "tone_ms": 300,
                "function_calls": [{"name": "end_call", "arguments": {"reason": "done"}}],
            }
        ],
    )
    async with running_rig(
        tmp_path, PLAIN, keep=True, local={"behaviour": "script", "script": script}
    ) as rig:
        result = await rig.call("frontdesk", _speech(1.5), tail_s=6.0)
        assert result.ended_by == "agent"
        await wait_until(lambda: len(rig.heard.ended) == 1)
        await rig.flushed()
        (call,) = _record(rig, tmp_path)
    assert (call["end_reason"], call["ended_by"]) == ("done", "agent")
    (tool,) = call["tools"]
    assert tool["name"] == "end_call" and tool["ok"] is True
    assert json.loads(tool["arguments"]) == {"reason": "done"}


async def test_a_transfer_is_kept_with_its_target(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        [
            {
                "say": "Transferring you now.",
                "tone_ms": 300,
                "function_calls": [
                    {"name": "transfer_call", "arguments": {"target": "sip:operator@127.0.0.1"}}
                ],
            }
        ],
    )
    async with running_rig(
        tmp_path, PLAIN, keep=True, local={"behaviour": "script", "script": script}
    ) as rig:
        await rig.call("frontdesk", _speech(1.5), tail_s=6.0)
        await wait_until(lambda: len(rig.heard.ended) == 1)
        await rig.flushed()
        (call,) = _record(rig, tmp_path)
    assert (call["end_reason"], call["ended_by"]) == ("transferred", "transfer")
    (tool,) = call["tools"]
    assert "sip:operator@127.0.0.1" in tool["arguments"] and tool["ok"] is True


async def test_a_barge_in_is_kept_with_the_line_as_heard(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        [
            {"say": "Let me tell you all about our opening hours today.", "tone_ms": 4000},
            {"say": "Sorry, go on.", "tone_ms": 300},
        ],
    )
    speech = sample_speech(16000)
    caller = np.concatenate(
        [speech[:24000], np.zeros(24000, np.int16), speech[24000:40000], np.zeros(16000, np.int16)]
    )
    async with running_rig(
        tmp_path, PLAIN, keep=True, local={"behaviour": "script", "script": script}
    ) as rig:
        await rig.call("frontdesk", caller, tail_s=2.0)
        await wait_until(lambda: len(rig.heard.ended) == 1)
        await rig.flushed()
        (call,) = _record(rig, tmp_path)
    barge_ins = call["barge_ins"]
    assert isinstance(barge_ins, list) and barge_ins, call
    cut = [line for line in call["transcript"] if line["truncated"]]
    assert len(cut) == 1 and cut[0]["speaker"] == "agent"
    assert cut[0]["text"].endswith("…")
    assert cut[0]["end_ms"] <= barge_ins[0]["at_ms"] + 40


async def test_a_provider_that_cannot_be_reached_and_a_full_house_are_kept(
    tmp_path: Path,
) -> None:
    async with running_rig(
        tmp_path,
        PLAIN,
        keep=True,
        local={"behaviour": "echo", "session_start_delay_s": 5.0},
        sip={"answer_timeout_s": 0.5, "max_calls": 1},
    ) as rig:
        result = await rig.call("frontdesk", _speech(0.5), tail_s=0.5)
        assert result.status == 503
        await rig.flushed()
        calls = _record(rig, tmp_path)
    (call,) = calls
    assert (call["end_reason"], call["ended_by"]) == ("realtime_unavailable", "provider")
    assert call["answered_at"] is None


async def test_a_recording_lines_up_with_what_each_side_said(tmp_path: Path) -> None:
    speech = sample_speech(16000)[:32000]
    async with running_rig(
        tmp_path,
        PLAIN,
        keep=True,
        local={"behaviour": "echo"},
        records={"record": True},
    ) as rig:
        result = await rig.call(
            "frontdesk", np.concatenate([speech, np.zeros(16000, np.int16)]), tail_s=3.5
        )
        await wait_until(lambda: len(rig.heard.ended) == 1)
        assert rig.keeping is not None
        await rig.keeping.sink.close()
        await rig.flushed()
        (call,) = _record(rig, tmp_path)
    assert call["recording_status"] == "complete", call
    path = Path(str(call["recording"]))
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    left, right = stereo[:, 0].astype(np.float64), stereo[:, 1].astype(np.float64)
    # What the caller sent, as the agent decoded it: G.711 at 8 kHz.
    sent = ulaw_decode(ulaw_encode(soxr.resample(speech, 16000, 8000))).astype(np.float64)
    at_left, score_left = _find(left, sent)
    at_right, score_right = _find(right, sent)  # the echo backend says it back
    assert score_left > 0.9, score_left
    assert score_right > 0.8, score_right
    # The echo starts after the caller's speech ended plus the turn's latency as the
    # caller measured it; the two agree within three frames. The caller counts what it
    # hears on its own 20 ms ticks and the agent records on its clock's ticks, and which
    # of the two clocks ticks first depends on when each started (the agent's when the
    # ACK arrived): that alone moves the caller's figure by one frame.
    gap_ms = (at_right - (at_left + sent.size)) / 8
    heard_latency = result.turn_latencies_ms[0]
    assert abs(gap_ms - heard_latency) <= 60, (gap_ms, heard_latency)


def _find(channel: NDArray[np.float64], part: NDArray[np.float64]) -> tuple[int, float]:
    """Where `part` sits in `channel`, and the normalised correlation there."""
    corr = np.correlate(channel, part, mode="valid")
    at = int(np.argmax(corr))
    window = channel[at : at + part.size]
    score = float(corr[at] / (np.linalg.norm(window) * np.linalg.norm(part) + 1e-9))
    return at, score
