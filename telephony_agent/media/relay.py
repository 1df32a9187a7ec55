"""Two call legs talking to each other through us: a bridged transfer's media path.

Why we relay at all: where the caller's side refuses REFER, the agent can still hand
the caller on by calling the target itself and passing audio between the two legs.
Each leg has its own codec (a PCMU caller, a PCMA or G.722 target) and its own packet
timing, so audio is decoded by the receiving leg, resampled to the other leg's rate and
sent one 20 ms frame per tick of the shared media clock, like the agent's speech.

The core (`RelayDirection`) is sans-I/O: PCM in as it arrives, one frame out per tick,
with a short jitter allowance and a bound on the delay that a sender running fast can
build up. `relay` is the asyncio shell: one task per leg reading its events, one clock
subscription, DTMF passed across, and the end of either leg ends the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import structlog
from numpy.typing import NDArray

from telephony_agent.audio.clock import MediaClock
from telephony_agent.audio.playout import Frame
from telephony_agent.audio.resample import InboundResampler
from telephony_agent.media.leg import AudioIn, DtmfIn, LegEnded, MediaLeg

__all__ = ["RelayDirection", "RelayResult", "relay"]

log = structlog.get_logger(__name__)

FRAME_MS = 20
#: A frame whose peak reaches this (about -36 dBFS) carries sound, not line noise or the
#: silence a leg fills gaps with: what `frames_voiced` counts.
VOICED_PEAK = 500


class RelayDirection:
    """One way of a bridge: PCM pushed at `in_rate`, one frame per tick at `out_rate`.

    After running dry it waits for `preroll_frames` frames before it plays again, so the
    phase between packet arrivals and clock ticks does not turn into a gap every other
    frame; audio older than `max_delay_ms` is dropped so a fast sender cannot build up
    delay. Counts what it played, filled with silence and dropped.
    """

    def __init__(
        self, in_rate: int, out_rate: int, *, preroll_frames: int = 2, max_delay_ms: int = 120
    ) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.frame_samples = out_rate * FRAME_MS // 1000
        self._resampler = InboundResampler(in_rate, out_rate) if in_rate != out_rate else None
        self._preroll = preroll_frames * self.frame_samples
        capacity = max(self._preroll + self.frame_samples, out_rate * max_delay_ms // 1000)
        self._buffer = np.zeros(capacity, dtype=np.int16)
        self._count = 0
        self._playing = False
        self._silence = np.zeros(self.frame_samples, dtype=np.int16)
        self.frames_played = 0
        self.frames_voiced = 0
        self.frames_silent = 0
        self.samples_dropped = 0

    @property
    def buffered_ms(self) -> float:
        return self._count * 1000.0 / self.out_rate

    def push(self, pcm: NDArray[np.int16]) -> None:
        """Audio received from one leg, at its rate."""
        data = self._resampler.process(pcm) if self._resampler is not None else pcm
        n = int(data.size)
        if n == 0:
            return
        capacity = self._buffer.size
        if n >= capacity:
            self.samples_dropped += self._count + n - capacity
            self._buffer[:] = data[n - capacity :]
            self._count = capacity
            return
        overflow = self._count + n - capacity
        if overflow > 0:
            # Keep the newest audio: the oldest is what a listener would hear late.
            keep = self._count - overflow
            self._buffer[:keep] = self._buffer[overflow : self._count]
            self._count = keep
            self.samples_dropped += overflow
        self._buffer[self._count : self._count + n] = data
        self._count += n

    def pull(self) -> Frame:
        """The frame for this tick: the oldest 20 ms buffered, or silence."""
        size = self.frame_samples
        if not self._playing and self._count >= self._preroll:
            self._playing = True
        if not self._playing or self._count < size:
            self._playing = False
            self.frames_silent += 1
            return Frame(self._silence, None, False)
        out = self._buffer[:size].copy()
        remaining = self._count - size
        self._buffer[:remaining] = self._buffer[size : self._count]
        self._count = remaining
        self.frames_played += 1
        if max(int(out.max()), -int(out.min())) >= VOICED_PEAK:
            self.frames_voiced += 1
        return Frame(out, None, True)


@dataclass(frozen=True)
class RelayResult:
    """How a bridge ended: which side left first (`"a"` or `"b"`), why, for how long the
    two sides were connected, and the frames relayed each way (`voiced_*`: with sound)."""

    ended_by: str
    reason: str
    duration_s: float
    frames_a_to_b: int
    frames_b_to_a: int
    voiced_a_to_b: int = 0
    voiced_b_to_a: int = 0


async def relay(
    a: MediaLeg,
    b: MediaLeg,
    clock: MediaClock,
    *,
    a_free: Callable[[], bool] | None = None,
    a_gone: Callable[[], bool] | None = None,
    send_a: Callable[[Frame], None] | None = None,
) -> RelayResult:
    """Relay audio and DTMF between `a` and `b` until either ends.

    `a_free` says whether leg `a` may be used yet (the agent may still be speaking its
    last words on it): until it returns True nothing is sent to `a` and its events are
    not read, so `b` hears silence and `a`'s audio still reaches whoever reads it.
    `a_gone` says, checked every tick, that `a` has ended even though its end event went
    to that other reader. `send_a` replaces `a.send_frame` (a wrapper that counts the
    agent's frames).
    """
    to_b = RelayDirection(a.sample_rate, b.sample_rate)
    to_a = RelayDirection(b.sample_rate, a.sample_rate)
    write_a = send_a or a.send_frame
    ended: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
    a_started = asyncio.Event()
    started = time.monotonic()
    #: Silent frames `a` got between the takeover and the first relayed one: the gap
    #: the caller hears at the handover (-1: nothing relayed to `a` yet).
    handover = [0, -1]

    def finish(side: str, reason: str) -> None:
        if not ended.done():
            ended.set_result((side, reason))

    async def read(leg: MediaLeg, into: RelayDirection, other: MediaLeg, side: str) -> None:
        async for event in leg.events():
            if isinstance(event, AudioIn):
                into.push(event.pcm)
            elif isinstance(event, DtmfIn):
                other.send_dtmf(event.digit)
            elif isinstance(event, LegEnded):
                finish(side, event.reason)
                return
        finish(side, "ended")

    async def read_a() -> None:
        await a_started.wait()
        await read(a, to_b, b, "a")

    def on_tick(tick: int) -> None:
        del tick
        if a_gone is not None and a_gone():
            finish("a", "ended")
            return
        b.send_frame(to_b.pull())
        if not a_started.is_set():
            if a_free is not None and not a_free():
                to_a.pull()  # the agent still has the line: keep `b`'s audio current
                return
            a_started.set()
            log.info("relay_took_over", buffered_ms=round(to_a.buffered_ms, 1))
        frame = to_a.pull()
        if handover[1] < 0:
            if frame.speech:
                handover[1] = handover[0]
            else:
                handover[0] += 1
        write_a(frame)

    readers = [
        asyncio.ensure_future(read_a()),
        asyncio.ensure_future(read(b, to_a, a, "b")),
    ]
    subscription = clock.subscribe(on_tick)
    try:
        side, reason = await ended
    finally:
        subscription.cancel()
        for task in readers:
            task.cancel()
        for task in readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    result = RelayResult(
        ended_by=side,
        reason=reason,
        duration_s=time.monotonic() - started,
        frames_a_to_b=to_b.frames_played,
        frames_b_to_a=to_a.frames_played,
        voiced_a_to_b=to_b.frames_voiced,
        voiced_b_to_a=to_a.frames_voiced,
    )
    log.info(
        "relay_ended",
        ended_by=side,
        reason=reason,
        duration_s=round(result.duration_s, 2),
        frames_a_to_b=to_b.frames_played,
        frames_b_to_a=to_a.frames_played,
        voiced_a_to_b=to_b.frames_voiced,
        voiced_b_to_a=to_a.frames_voiced,
        handover_gap_ms=handover[1] * FRAME_MS if handover[1] >= 0 else None,
        dropped_ms=round(
            to_a.samples_dropped * 1000 / a.sample_rate
            + to_b.samples_dropped * 1000 / b.sample_rate,
            1,
        ),
    )
    return result
