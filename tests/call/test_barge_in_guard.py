"""Barge-in that fires only on a real interruption, through the local backend.

Each call runs the real Call against the local Realtime backend over a websocket,
configured as `[turns]` configures it: the server neither interrupts nor answers by
itself. The backend's energy VAD is the "server VAD" that must be fooled: it calls
anything above -45 dBFS speech, the agent's echo included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.clock import MediaClock
from telephony_agent.call.barge_in import TurnPolicy
from telephony_agent.call.profile import CallProfile
from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.media.file_leg import FileLeg
from telephony_agent.realtime.backend import BackendOptions
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.realtime.events import InputTranscript, ServerEvent
from tests.call.helpers import (
    CallResult,
    EchoLeg,
    noise_burst,
    run_file_call,
    sample_speech,
    silence,
)

RATE = 8000
FRAME = RATE // 50
#: Media clock at real time: these tests measure milliseconds on it.
REAL_TIME_TICK_MS = 20


def _phrase(name: str) -> NDArray[np.int16]:
    path = Path(str(files("telephony_agent") / "samples" / "booking" / name))
    return decode_audio_file(path, RATE)


def _onset_frame(pcm: NDArray[np.int16]) -> int:
    """The first 20 ms frame of `pcm` at speech level (-40 dBFS)."""
    frames = pcm[: pcm.size // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) / 32768**2 + 1e-20)
    return int(np.argmax(level > -40))


def _echo_leg(delay_ms: int) -> object:
    def make(
        pcm: NDArray[np.int16], rate: int, clock: MediaClock, tail: float, dtmf: object
    ) -> FileLeg:
        return EchoLeg(pcm, rate, clock, tail_s=tail, echo_db=-20.0, echo_delay_ms=delay_ms)

    return make


def _agent_frames(result: CallResult) -> int:
    return sum(1 for f in result.leg.sent if f.speech)


def _assert_section_3(result: CallResult) -> None:
    """Truncate at what was played, never past what was received, never rejected."""
    stats = result.backend.stats
    assert stats.rejected_truncates == 0
    assert stats.early_response_creates == 0
    for barge in result.record.barge_ins:
        late = [
            i
            for i, f in enumerate(result.leg.sent)
            if i >= barge.frames_sent and f.speech and f.item_id == barge.item_id
        ]
        assert not late, "the interrupted item played on after the cut"
    for record in stats.truncations:
        assert 0 < record.audio_end_ms <= record.sent_ms
    cut = {b.item_id: b.played_ms for b in result.record.barge_ins if b.truncated}
    assert {r.item_id: r.audio_end_ms for r in stats.truncations} == cut


async def _echo_call(*, guard: bool, delay_ms: int) -> CallResult:
    speech = sample_speech(RATE)
    caller = np.concatenate([silence(RATE, 300), speech, silence(RATE, 6000)])
    return await run_file_call(
        caller,
        leg_rate=RATE,
        options=BackendOptions(realtime_factor=4.0),
        guard=guard,
        leg_factory=_echo_leg(delay_ms),  # type: ignore[arg-type]
    )


async def test_the_agents_own_echo_never_interrupts_a_whole_response() -> None:
    for delay_ms in (100, 300):
        result = await _echo_call(guard=True, delay_ms=delay_ms)
        stats, record = result.backend.stats, result.record
        # The server VAD took the echo for speech: the caller's turn plus at least one more.
        assert stats.speech_started >= 2, stats.speech_started
        assert record.barge_ins == [], delay_ms
        assert record.ignored_speech["echo"] >= 1
        # The whole 3.35 s answer reached the caller, and nothing answered the echo.
        assert _agent_frames(result) >= 3300 // 20
        assert stats.response_creates == 1 and stats.responses == 1
        assert record.truncates == 0 and record.cancels == 0
        _assert_section_3(result)


async def test_without_the_guard_the_same_echo_cuts_the_agent_off() -> None:
    """The echo test can fail: unguarded, the agent interrupts itself."""
    result = await _echo_call(guard=False, delay_ms=200)
    assert result.record.barge_ins
    assert _agent_frames(result) < 3000 // 20


async def test_a_real_interruption_over_the_echo_stops_the_agent_within_min_speech_ms() -> None:
    policy = TurnPolicy()
    for delay_ms in (100, 300):
        speech = sample_speech(RATE)
        interruption = _phrase("sorry_again.wav")
        head = np.concatenate([silence(RATE, 300), speech, silence(RATE, 1500)])
        caller = np.concatenate([head, interruption, silence(RATE, 4000)])
        result = await run_file_call(
            caller,
            leg_rate=RATE,
            options=BackendOptions(realtime_factor=4.0),
            guard=True,
            leg_factory=_echo_leg(delay_ms),  # type: ignore[arg-type]
            tick_ms=REAL_TIME_TICK_MS,
        )
        record, leg = result.record, result.leg
        assert isinstance(leg, EchoLeg)
        (barge,) = record.barge_ins
        onset = head.size // FRAME + _onset_frame(interruption)
        cut_after_ms = (barge.frames_sent - leg.sent_when_heard[onset]) * 20
        assert 0 < cut_after_ms <= policy.min_speech_ms + 40, (delay_ms, cut_after_ms)
        assert not leg.sent[barge.frames_sent].speech
        assert barge.truncated and record.cancels + record.truncates >= 1
        # The caller's first turn and the interruption: each answered exactly once.
        assert result.backend.stats.response_creates == 2
        assert result.backend.stats.responses == 2
        _assert_section_3(result)


class _Transcribed(RealtimeSession):
    """The local backend transcribes no words; this gives every caller turn after the
    first the words `LATER`, as a provider's input transcription would."""

    LATER = "Mm-hmm."

    async def events(self) -> AsyncIterator[ServerEvent]:
        turns = 0
        async for event in super().events():
            if isinstance(event, InputTranscript) and event.final:
                turns += 1
                if turns > 1:
                    event = dataclasses.replace(event, transcript=self.LATER)
            yield event


class _Objection(_Transcribed):
    LATER = "Hold on."


async def _overlap_call(
    overlap: NDArray[np.int16],
    *,
    session: type[RealtimeSession],
    transcription: bool = False,
    duck_db: float = -12.0,
) -> CallResult:
    """The caller's turn, then `overlap` 1.5 s after it, while the agent answers."""
    speech = sample_speech(RATE)
    caller = np.concatenate(
        [silence(RATE, 300), speech, silence(RATE, 1500), overlap, silence(RATE, 4000)]
    )
    return await run_file_call(
        caller,
        leg_rate=RATE,
        options=BackendOptions(realtime_factor=4.0),
        guard=True,
        transcription_model="whisper-1" if transcription else None,
        session_class=session,
        profile=CallProfile(turns=TurnPolicy(duck_db=duck_db)),
    )


async def test_a_backchannel_over_the_agent_does_not_cut_and_is_not_answered() -> None:
    result = await _overlap_call(
        _phrase("number_two.wav"), session=_Transcribed, transcription=True
    )
    record, stats = result.record, result.backend.stats
    assert record.barge_ins == []
    assert record.ignored_speech["backchannel"] == 1
    assert _agent_frames(result) >= 3300 // 20
    # It is in the conversation all the same: two committed caller turns, one answer.
    assert stats.commits == 2
    assert stats.response_creates == 1
    _assert_section_3(result)


async def test_the_same_turn_with_other_words_interrupts_and_is_answered_once() -> None:
    result = await _overlap_call(_phrase("number_two.wav"), session=_Objection, transcription=True)
    record, stats = result.record, result.backend.stats
    assert len(record.barge_ins) == 1 and record.barge_ins[0].truncated
    assert stats.response_creates == 2 and stats.early_response_creates == 0
    _assert_section_3(result)


async def test_a_short_noise_burst_ducks_and_restores_without_truncating() -> None:
    burst = noise_burst(RATE, 120, seed=11)
    reference = await _overlap_call(np.zeros_like(burst), session=RealtimeSession)
    clean = [f.pcm for f in reference.leg.sent if f.speech]
    for duck_db in (-12.0, -30.0):
        result = await _overlap_call(burst, session=RealtimeSession, duck_db=duck_db)
        record, stats = result.record, result.backend.stats
        assert stats.speech_started == 2, "the burst must reach the server's VAD"
        assert record.barge_ins == [] and record.ignored_speech["short"] == 1
        assert record.truncates == 0 and record.cancels == 0
        assert stats.truncates_accepted == 0 and stats.response_creates == 1
        # The same answer as without the burst; part of it at `duck_db`, then full level.
        heard = [f.pcm for f in result.leg.sent if f.speech]
        assert len(heard) == len(clean)
        ratios = []
        for got, want in zip(heard, clean, strict=True):
            reference_energy = float(np.dot(want.astype(np.float64), want.astype(np.float64)))
            if reference_energy > 1e6 * FRAME:
                ratios.append(float(np.dot(got.astype(np.float64), want)) / reference_energy)
        gain = 10 ** (duck_db / 20)
        ducked = [i for i, r in enumerate(ratios) if abs(r - gain) < 0.03]
        assert len(ducked) >= 5, (duck_db, ratios)
        after = ratios[ducked[-1] + 2 :]
        assert after and all(abs(r - 1.0) < 0.01 for r in after), (duck_db, ratios)
        _assert_section_3(result)
