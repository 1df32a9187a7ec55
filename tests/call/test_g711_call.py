"""G.711 passthrough in the Call: the media path it picks, the model's bytes queued as
they came, exact truncation at 8 bytes per millisecond, and recordings still decoded."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.clock import MediaClock
from telephony_agent.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from telephony_agent.call.media_path import MediaPath
from telephony_agent.call.playback import G711Playback
from telephony_agent.media.file_leg import FileLeg
from telephony_agent.media.leg import AudioIn
from telephony_agent.realtime.backend import BackendOptions
from tests.call.helpers import noise_burst, run_file_call, sample_speech, silence


class Recorder:
    def __init__(self) -> None:
        self.pairs: list[tuple[NDArray[np.int16] | None, NDArray[np.int16] | None]] = []

    def add(self, caller: NDArray[np.int16] | None, agent: NDArray[np.int16] | None) -> None:
        self.pairs.append((caller, agent))


def leg(rate: int) -> FileLeg:
    return FileLeg(np.zeros(rate // 50, dtype=np.int16), rate, MediaClock())


def test_media_path_choice() -> None:
    assert MediaPath(leg(8000), "pcm", 24000).kind == "pcm"
    passthrough = MediaPath(leg(8000), "pcma", 8000)
    assert passthrough.kind == "g711_passthrough"
    assert isinstance(passthrough.playback, G711Playback)
    transcoded = MediaPath(leg(16000), "pcmu", 8000)
    assert transcoded.kind == "g711_transcoded"
    assert transcoded.playback.leg_rate == 16000


def test_uplink_passes_the_same_law_untouched_and_converts_the_rest() -> None:
    path = MediaPath(leg(8000), "pcmu", 8000)
    codes = bytes(range(0x20, 0x20 + 160))
    assert path.uplink(AudioIn(None, payload=codes, law="pcmu")) == codes
    other = path.uplink(AudioIn(None, payload=codes, law="pcma"))
    assert other == ulaw_encode(alaw_decode(codes)).tobytes()
    pcm = (np.arange(160, dtype=np.int16) - 80) * 100
    assert path.uplink(AudioIn(pcm)) == ulaw_encode(pcm).tobytes()
    # A recording reads samples: both sides decode through the table on first use.
    model = bytes(range(0x40, 0x40 + 160))
    path.playback.push_delta("a", model)
    path.playback.end_item()
    frame = path.playback.pop_frame()
    assert frame.payload == model
    np.testing.assert_array_equal(AudioIn(None, payload=codes, law="pcmu").pcm, ulaw_decode(codes))
    np.testing.assert_array_equal(frame.pcm, ulaw_decode(model))


def test_transcoded_path_resamples_and_encodes() -> None:
    path = MediaPath(leg(16000), "pcma", 8000)
    tone = (8000 * np.sin(np.arange(320) * 2 * np.pi * 440 / 16000)).astype(np.int16)
    sent = b"".join(path.uplink(AudioIn(tone)) for _ in range(5))
    assert len(sent) in range(600, 801)  # 100 ms at 8 kHz, less the resampler's delay
    path.playback.push_delta("a", alaw_encode(np.zeros(800, dtype=np.int16)).tobytes())
    assert path.playback.received_ms("a") == 100  # 8 bytes per ms of the model's G.711


def test_greeting_recording_is_encoded_once_into_the_queue() -> None:
    playback = G711Playback("pcmu")
    speech = sample_speech(24000)[:24000]  # one second at 24 kHz
    playback.push_recording("greeting", speech.astype("<i2").tobytes(), 24000)
    frames = [playback.pop_frame() for _ in range(50)]
    assert all(f.speech and f.payload is not None and len(f.payload) == 160 for f in frames)
    assert not playback.buffer.is_playing


async def test_echo_call_in_passthrough_returns_the_model_bytes_untouched() -> None:
    speech = sample_speech(8000)
    caller = np.concatenate([silence(8000, 300), speech])
    result = await run_file_call(
        caller,
        leg_rate=8000,
        options=BackendOptions(realtime_factor=40.0, capture=True),
        tail_s=5.0,
        audio_format="pcmu",
    )
    assert result.session.audio_format == "pcmu"
    spoken = [f.payload for f in result.leg.sent if f.speech]
    assert spoken and all(p is not None for p in spoken)
    heard = b"".join(p for p in spoken if p is not None)
    out = bytes(result.backend.stats.audio_out)
    # Every byte the model sent reached the leg as it was, padded to whole frames.
    assert heard[: len(out)] == out and set(heard[len(out) :]) <= {0xFF}
    # The caller's frames (PCM from this leg) were encoded once, in order, nothing lost.
    expected = ulaw_encode(caller).tobytes()
    assert bytes(result.backend.stats.audio_in)[: len(expected)] == expected


async def test_barge_in_truncates_at_exactly_what_was_played() -> None:
    rate = 8000
    caller = np.concatenate(
        [
            noise_burst(rate, 1500, seed=1),
            silence(rate, 1000),
            noise_burst(rate, 600, seed=2),
            silence(rate, 200),
        ]
    )
    result = await run_file_call(
        caller,
        leg_rate=rate,
        options=BackendOptions(realtime_factor=8.0, auto_cancel_on_speech=False, capture=True),
        tail_s=3.0,
        audio_format="pcmu",
    )
    assert result.record.barge_ins, "the caller's second burst must interrupt the agent"
    barge = result.record.barge_ins[0]
    [truncate] = result.backend.stats.truncations
    played = [
        f.payload
        for f in result.leg.sent[: barge.frames_sent]
        if f.speech and f.item_id == truncate.item_id
    ]
    # 160 bytes per 20 ms frame, 8 bytes per ms: the truncate names what the caller heard.
    assert truncate.audio_end_ms == barge.played_ms == 20 * len(played)
    assert 0 < truncate.audio_end_ms <= truncate.sent_ms
    heard = b"".join(p for p in played if p is not None)
    assert heard == bytes(result.backend.stats.audio_out)[: len(heard)]
    assert result.backend.stats.rejected_truncates == 0
