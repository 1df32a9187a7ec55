"""baresip calls the booking line, whose availability check is slow: the caller hears
the hold tone while it runs, then the answer.

The agent is `telephony-agent serve` with the local backend's booking behaviour and a
Python `check_availability` that sleeps before answering. baresip plays the booking
request and dumps what it decoded from the agent's RTP (PCMU); the hold tone must be
in that dump, where the agent's log says the hold was, and the answer must follow it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from telephony_agent.audio.wav import WavWriter, read_wav
from telephony_agent.call.hold import hold_tone
from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.realtime.backend.phrases import booking_phrases

from .conftest import SAMPLE, StartAgent
from .test_baresip import baresip_config, dial_with_baresip

pytestmark = pytest.mark.skipif(
    shutil.which("baresip") is None,
    reason="baresip is not installed (Debian/Ubuntu package baresip-core; .ci/run installs it)",
)

RATE = 8000
TOOL_SLEEP_S = 4.0
#: The caller: a moment of silence, the booking request, then quiet while the agent
#: says "One moment", holds for the slow check, and offers the table.
LEAD_S, TRAIL_S = 0.5, 13.0
BARESIP_RUN_S = 21

SLOW_TOOL = f"""
import time

from telephony_agent.demo_tools.booking import check_availability as check


def check_availability(context, arguments):
    time.sleep({TOOL_SLEEP_S})
    return check(context, arguments)
"""

PROFILE = """
[[profiles]]
name = "booking"
default = true
instructions = "You take table bookings."
tools = ["check_availability", "end_call"]
hold_audio = "tone"
filler_after_s = 0.6

[[tools]]
name = "check_availability"
description = "Whether a table is free."
python = "slow_booking:check_availability"
timeout_s = 10
"""


def located(heard: NDArray[np.int16], part: NDArray[np.int16]) -> tuple[int, float]:
    """Where `part` best matches `heard` and the normalised correlation over that window
    (FFT cross-correlation; the window's own energy, not the whole dump's, normalises)."""
    x = heard.astype(np.float64)
    t = part.astype(np.float64)
    size = 1 << (x.size + t.size).bit_length()
    corr = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(t, size)), size)[
        : x.size - t.size + 1
    ]
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    window = np.sqrt(np.maximum(energy[t.size :] - energy[: x.size - t.size + 1], 1e-9))
    score = corr / (window * np.linalg.norm(t))
    at = int(np.argmax(score))
    return at, float(score[at])


def test_baresip_hears_the_hold_tone_while_a_slow_tool_runs(
    start_agent_server: StartAgent, tmp_path: Path
) -> None:
    workdir = tmp_path / "agent0"  # serve runs here, so its modules are importable
    workdir.mkdir()
    (workdir / "slow_booking.py").write_text(SLOW_TOOL, encoding="utf-8")
    server = start_agent_server(
        extra_toml=PROFILE, sip={"codecs": "PCMU"}, local={"behaviour": "booking"}
    )
    request = decode_audio_file(SAMPLE.parent / "booking" / "caller_booking_request.wav", RATE)
    source = tmp_path / "caller.wav"
    with WavWriter(source, RATE) as wav:
        wav.write(np.zeros(int(LEAD_S * RATE), np.int16))
        wav.write(request)
        wav.write(np.zeros(int(TRAIL_S * RATE), np.int16))
    phone = tmp_path / "baresip"
    baresip_config(phone, source, "PCMU")
    dial_with_baresip(phone, f"sip:booking@127.0.0.1:{server.sip_port}", BARESIP_RUN_S)
    server.wait_health(lambda h: h["active_calls"] == 0 and h["completed"] >= 1)

    # The agent's side: the tool ran long, the hold filled the wait, the answer came.
    (feedback,) = server.log_events("tool_feedback")
    assert feedback["kind"] == "hold"
    lines = [(r.get("speaker"), str(r.get("text"))) for r in server.log_events("transcript")]
    agent = [text for speaker, text in lines if speaker == "agent"]
    assert agent[:2] == ["One moment, let me check.", "[hold]"], lines
    assert agent[2].startswith("We have a table for two people"), lines

    # The caller's side: the tone is in what baresip decoded, and the answer follows it.
    (dump,) = sorted((phone / "dump").glob("dump-*-dec.wav"))
    heard, heard_rate = read_wav(dump)
    assert heard_rate == RATE
    tone = hold_tone(RATE)[:RATE]  # both notes of the chime
    tone_at, tone_score = located(heard, tone)
    book = booking_phrases()
    moment = decode_audio_file(SAMPLE.parent / "booking" / "one_moment.wav", RATE)
    offer = book.compose(["table_for"], RATE)
    moment_at, moment_score = located(heard, moment)
    offer_at, offer_score = located(heard, offer)
    print(
        f"\nbaresip heard: 'one moment' at {moment_at / RATE:.2f} s ({moment_score:.2f}), "
        f"hold tone at {tone_at / RATE:.2f} s ({tone_score:.2f}), "
        f"the offer at {offer_at / RATE:.2f} s ({offer_score:.2f})"
    )
    assert tone_score > 0.9 and moment_score > 0.8 and offer_score > 0.8
    assert moment_at + moment.size <= tone_at < offer_at
    # The hold lasted until the answer was ready, and the answer came right after it.
    (ended,) = server.log_events("tool_feedback_ended")
    hold_s = int(ended["duration_ms"]) / 1000
    assert hold_s > 1.0
    gap_s = offer_at / RATE - (tone_at / RATE + hold_s)
    assert -0.05 <= gap_s <= 0.3, gap_s
