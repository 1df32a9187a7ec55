"""A loopback leg: caller audio from memory, agent audio captured in memory.

Why it exists: the Call must be exercised end to end (pacing, barge-in, truncation)
without sockets, and `ask`-style tools and benchmarks need a caller that speaks a
file in real time. It is paced by the same shared media clock as real legs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.clock import MediaClock, Subscription
from telephony_agent.audio.playout import Frame
from telephony_agent.media.leg import AudioIn, DtmfIn, LegEnded, LegEvent, MediaLeg, TransferResult


class FileLeg(MediaLeg):
    """Speaks `caller_pcm` one 20 ms frame per tick, then `tail_s` of silence, then hangs up."""

    codec = "file"

    def __init__(
        self,
        caller_pcm: NDArray[np.int16],
        sample_rate: int,
        clock: MediaClock,
        *,
        tail_s: float = 1.0,
        dtmf_at: dict[int, str] | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self._clock = clock
        n = self.frame_samples
        total = caller_pcm.size + int(tail_s * sample_rate)
        total += (-total) % n
        padded = np.zeros(total, dtype=np.int16)
        padded[: caller_pcm.size] = caller_pcm
        self._frames = padded.reshape(-1, n)
        self._dtmf_at = dict(dtmf_at or {})
        self._queue: asyncio.Queue[LegEvent] = asyncio.Queue()
        self._next = 0
        self._subscription: Subscription | None = None
        self._ended = False
        #: Every frame the agent sent, in order (one per tick).
        self.sent: list[Frame] = []
        #: Tick index of each inbound frame, for tests that align both directions.
        self.first_tick: int | None = None
        self.hangup_reason: str | None = None
        self.transfers: list[str] = []
        #: What a transfer reports (tests set a failure to see the model told).
        self.transfer_result = TransferResult(True, "transferred", 200)
        self.dtmf_sent: list[str] = []

    def events(self) -> AsyncIterator[LegEvent]:
        if self._subscription is None and not self._ended:
            self._subscription = self._clock.subscribe(self._on_tick)
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[LegEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, LegEnded):
                return

    def _on_tick(self, tick: int) -> None:
        if self._ended:
            return
        if self.first_tick is None:
            self.first_tick = tick
        if self._next >= len(self._frames):
            self._finish("file_finished")
            return
        digit = self._dtmf_at.get(self._next)
        if digit is not None:
            self._queue.put_nowait(DtmfIn(digit, 100))
        self._queue.put_nowait(AudioIn(self._frames[self._next]))
        self._next += 1

    def _finish(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        if self._subscription is not None:
            self._subscription.cancel()
        self._queue.put_nowait(LegEnded(reason))

    def send_frame(self, frame: Frame) -> None:
        self.sent.append(frame)

    async def hangup(self, reason: str) -> None:
        self.hangup_reason = reason
        self._finish("ended_by_agent")

    async def transfer(self, target: str) -> TransferResult:
        self.transfers.append(target)
        return self.transfer_result

    def send_dtmf(self, digits: str) -> bool:
        self.dtmf_sent.append(digits)
        return True

    def received_pcm(self) -> NDArray[np.int16]:
        """All agent audio as one signal at the leg rate (silence included)."""
        if not self.sent:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([f.pcm for f in self.sent])
