"""The bridged transfer's media path: one direction's frames and rates, and the relay
between two legs (audio both ways, DTMF across, either end ends it, the agent's last
words are not talked over)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.clock import MediaClock
from telephony_agent.audio.playout import Frame
from telephony_agent.media.leg import AudioIn, DtmfIn, LegEnded, LegEvent, MediaLeg
from telephony_agent.media.relay import RelayDirection, relay


def _tone(hz: float, rate: int, ms: int, level: float = 8000.0) -> NDArray[np.int16]:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * hz * t) * level).astype(np.int16)


def test_a_direction_waits_for_its_preroll_then_plays_in_order() -> None:
    direction = RelayDirection(8000, 8000)
    first, second = np.full(160, 100, np.int16), np.full(160, 200, np.int16)
    direction.push(first)
    assert not direction.pull().speech  # one frame is not yet enough to start
    direction.push(second)
    played = [direction.pull(), direction.pull(), direction.pull()]
    assert [f.speech for f in played] == [True, True, False]
    assert played[0].pcm.tolist() == first.tolist()
    assert played[1].pcm.tolist() == second.tolist()
    assert (direction.frames_played, direction.frames_silent) == (2, 2)
    assert direction.frames_voiced == 0  # a peak of 200 is line noise, not sound


def test_a_direction_resamples_to_the_other_legs_rate() -> None:
    up = RelayDirection(8000, 16000)
    down = RelayDirection(16000, 8000)
    for _ in range(5):
        up.push(_tone(440, 8000, 20))
        down.push(_tone(440, 16000, 20))
    up_frames = [up.pull() for _ in range(5)]
    down_frames = [down.pull() for _ in range(5)]
    assert all(f.speech for f in up_frames + down_frames)
    assert {f.pcm.size for f in up_frames} == {320}
    assert {f.pcm.size for f in down_frames} == {160}
    # The tone survives: most of the energy of the last frame is at 440 Hz.
    spectrum = np.abs(np.fft.rfft(up_frames[-1].pcm.astype(np.float64)))
    assert abs(int(np.argmax(spectrum)) * 16000 / 320 - 440) <= 50


def test_a_fast_sender_cannot_build_up_delay() -> None:
    direction = RelayDirection(8000, 8000, max_delay_ms=100)
    for _ in range(50):  # one second pushed at once
        direction.push(np.full(160, 7, np.int16))
    assert direction.buffered_ms <= 100
    assert direction.samples_dropped == 50 * 160 - 800


class _Leg(MediaLeg):
    """A leg fed by the test, keeping what it was sent."""

    def __init__(self, rate: int) -> None:
        self.sample_rate = rate
        self.codec = f"L16/{rate}"
        self.queue: asyncio.Queue[LegEvent] = asyncio.Queue()
        self.sent: list[Frame] = []
        self.digits: list[str] = []

    async def _events(self) -> AsyncIterator[LegEvent]:
        while True:
            event = await self.queue.get()
            yield event
            if isinstance(event, LegEnded):
                return

    def events(self) -> AsyncIterator[LegEvent]:
        return self._events()

    def send_frame(self, frame: Frame) -> None:
        self.sent.append(frame)

    async def hangup(self, reason: str) -> None:
        self.queue.put_nowait(LegEnded(reason))

    def send_dtmf(self, digits: str) -> bool:
        self.digits.append(digits)
        return True


async def _feed(leg: _Leg, pcm: NDArray[np.int16], frames: int) -> None:
    size = leg.sample_rate // 50
    for _ in range(frames):
        leg.queue.put_nowait(AudioIn(pcm[:size].copy()))
        await asyncio.sleep(0.02)


async def test_audio_flows_both_ways_and_a_bye_from_the_target_ends_it() -> None:
    caller, target = _Leg(8000), _Leg(16000)
    clock = MediaClock()
    task = asyncio.ensure_future(relay(caller, target, clock))
    await asyncio.gather(
        _feed(caller, _tone(300, 8000, 20), 15), _feed(target, _tone(1000, 16000, 20), 15)
    )
    caller.queue.put_nowait(DtmfIn("5", 100))
    await asyncio.sleep(0.05)
    target.queue.put_nowait(LegEnded("caller_hangup"))
    result = await asyncio.wait_for(task, 2.0)
    assert (result.ended_by, result.reason) == ("b", "caller_hangup")
    assert not caller.sent[0].speech and caller.sent[1].speech  # one frame of preroll
    assert result.frames_a_to_b >= 10 and result.frames_b_to_a >= 10
    assert result.voiced_b_to_a == result.frames_b_to_a
    assert {f.pcm.size for f in caller.sent} == {160}
    assert {f.pcm.size for f in target.sent} == {320}
    assert target.digits == ["5"]
    heard = np.concatenate([f.pcm for f in caller.sent if f.speech]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(heard))
    assert abs(int(np.argmax(spectrum)) * 8000 / heard.size - 1000) <= 20


async def test_the_caller_leg_is_left_to_the_agent_until_it_stops_sending() -> None:
    caller, target = _Leg(8000), _Leg(8000)
    free = False
    writes: list[Frame] = []
    task = asyncio.ensure_future(
        relay(caller, target, MediaClock(), a_free=lambda: free, send_a=writes.append)
    )
    caller.queue.put_nowait(AudioIn(np.full(160, 9, np.int16)))
    await _feed(target, _tone(500, 8000, 20), 5)
    assert writes == [] and caller.queue.qsize() == 1  # the agent still has the line
    free = True
    await _feed(target, _tone(500, 8000, 20), 10)
    assert any(f.speech for f in writes)
    assert caller.queue.qsize() == 0  # its audio now goes to the target
    caller.queue.put_nowait(LegEnded("caller_hangup"))
    result = await asyncio.wait_for(task, 2.0)
    assert result.ended_by == "a"
    assert caller.sent == []  # everything went through `send_a`


async def test_a_caller_gone_before_the_takeover_still_ends_the_relay() -> None:
    caller, target = _Leg(8000), _Leg(8000)
    gone = False
    task = asyncio.ensure_future(
        relay(caller, target, MediaClock(), a_free=lambda: False, a_gone=lambda: gone)
    )
    await _feed(target, _tone(500, 8000, 20), 3)
    assert not task.done()
    gone = True  # its end event went to the agent's reader, not to the relay
    result = await asyncio.wait_for(task, 1.0)
    assert (result.ended_by, result.reason) == ("a", "ended")
