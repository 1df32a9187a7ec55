"""A SIP call to the booking line with a slow availability check: the hold tone is what
the caller hears, what the stereo recording keeps on the agent's side, and a `[hold]`
line in the kept transcript."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from telephony_agent.call.hold import hold_tone
from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.records import open_reader
from tests.http.support import wait_until
from tests.switchboard.support import running_rig

SAMPLES = Path(__file__).resolve().parents[2] / "telephony_agent" / "samples" / "booking"

BOOKING = """
[[profiles]]
name = "booking"
numbers = ["booking"]
instructions = "You take table bookings."
tools = ["check_availability", "end_call"]
hold_audio = "tone"
filler_after_s = 0.5

[[tools]]
name = "check_availability"
description = "Whether a table is free."
python = "tests.tools.sample_tools:slow_check_availability"
timeout_s = 10
"""


def score_at(channel: NDArray[np.int16], part: NDArray[np.int16], at: int) -> float:
    """Normalised correlation of `part` with `channel` starting at sample `at`."""
    window = channel[at : at + part.size].astype(np.float64)
    t = part[: window.size].astype(np.float64)
    return float(window @ t / (np.linalg.norm(window) * np.linalg.norm(t) + 1e-9))


def kept_call(tmp_path: Path) -> dict[str, Any]:
    reader = open_reader(f"sqlite:///{tmp_path / 'data' / 'calls.db'}")
    try:
        (summary,) = reader.list_calls(limit=5)
        call = reader.get_call(str(summary["id"]))
    finally:
        reader.close()
    assert call is not None
    return call


async def test_the_hold_tone_is_heard_recorded_and_in_the_transcript(tmp_path: Path) -> None:
    request = decode_audio_file(SAMPLES / "caller_booking_request.wav", 16000)
    audio = np.concatenate([np.zeros(8000, np.int16), request, np.zeros(16000, np.int16)])
    async with running_rig(
        tmp_path,
        BOOKING,
        keep=True,
        local={"behaviour": "booking"},
        records={"record": True},
    ) as rig:
        result = await rig.call("booking", audio, tail_s=9.0)
        await wait_until(lambda: len(rig.heard.ended) == 1)
        assert rig.keeping is not None
        await rig.keeping.sink.close()
        await rig.flushed()
        call = kept_call(tmp_path)
    assert result.answered, result.summary()
    transcript = call["transcript"]
    agent = [line for line in transcript if line["speaker"] == "agent"]
    texts = [line["text"] for line in agent]
    assert texts[:2] == ["One moment, let me check.", "[hold]"], texts
    assert texts[2].startswith("We have a table for two people"), texts
    hold = agent[1]
    assert hold["end_ms"] - hold["start_ms"] > 800
    assert agent[2]["start_ms"] == hold["end_ms"]  # the answer on the very next frame

    # The recording's agent channel holds the tone exactly where the transcript says.
    with wave.open(str(call["recording"])) as wav:
        rate = wav.getframerate()
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    agent_channel = stereo[:, 1]
    start = hold["start_ms"] * rate // 1000
    length = (hold["end_ms"] - hold["start_ms"]) * rate // 1000 - rate // 50
    assert score_at(agent_channel, hold_tone(rate)[:length], start) > 0.99
    # The hold is no barge-in and the tool call is kept once, with its real result.
    assert call["barge_ins"] == []
    (tool,) = call["tools"]
    assert tool["name"] == "check_availability" and tool["ok"]
    # The caller heard it too (G.711 both ways).
    heard = result.recording
    tone = hold_tone(result.recording_rate)[: result.recording_rate // 2]
    scores = [
        score_at(heard, tone, at)
        for at in range(0, heard.size - tone.size, result.recording_rate // 100)
    ]
    assert max(scores) > 0.95
