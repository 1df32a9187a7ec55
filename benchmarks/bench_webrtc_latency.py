"""How late a browser caller's voice reaches the Call: aiortc's stock receiver against WebRtcLeg.

Run: ``python benchmarks/bench_webrtc_latency.py [--seconds 10] [--rounds 3]``.

Setup: one call on loopback, offerer and answerer in this one process so both
read the same clock. The offering side is plain aiortc with a track that
plays 20 ms of a 1 kHz tone every 500 ms and silence between, and records the
moment it hands each tone frame to aiortc's sender ("captured"). The
answering side is either aiortc's stock receiver, read frame by frame from
its remote track, or ``WebRtcLeg`` with its ``AudioIn`` events. The first
loud frame after a quiet stretch is the burst's arrival; its delay is arrival
minus capture. Both variants include the same Opus encode, SRTP and loopback
path; the difference is the receive path (aiortc: a four-packet prefetch
jitter buffer and a decoder thread; WebRtcLeg: in-order packets decoded at
once).

Prints p50 and p99 of the delay per variant (medians over rounds) and the
difference. Numbers, no asserts: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import statistics
import time
from collections.abc import Callable

import av
import numpy as np
import structlog
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from numpy.typing import NDArray

from telephony_agent.audio.clock import MediaClock
from telephony_agent.media.leg import AudioIn, LegEnded
from telephony_agent.media.webrtc import WebRtcLeg
from telephony_agent.media.webrtc.loopback import offer_loopback_candidates
from telephony_agent.media.webrtc.tracks import FRAME_SAMPLES, SAMPLE_RATE, LoopingPcmTrack

PERIOD_FRAMES = 25
LOUD = 2000.0  # RMS threshold; the burst is ~7000, Opus silence is ~0
VARIANTS = ("stock", "ours")


def burst_pattern() -> NDArray[np.int16]:
    """One period: a 20 ms 1 kHz burst, then 480 ms of silence."""
    pcm = np.zeros(PERIOD_FRAMES * FRAME_SAMPLES, dtype=np.int16)
    t = np.arange(FRAME_SAMPLES)
    pcm[:FRAME_SAMPLES] = (np.sin(2 * math.pi * 1000.0 * t / SAMPLE_RATE) * 10000).astype(np.int16)
    return pcm


class CapturingTrack(LoopingPcmTrack):
    """The page's microphone: notes when each burst frame is handed to aiortc."""

    def __init__(self, pcm: NDArray[np.int16]) -> None:
        super().__init__(pcm)
        self.captured: list[float] = []
        self._count = 0

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        if self._count % PERIOD_FRAMES == 0:
            self.captured.append(time.monotonic())
        self._count += 1
        return frame


class OnsetDetector:
    """Arrival times of bursts: the first loud frame after a quiet one."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self._quiet = True

    def frame(self, pcm: NDArray[np.int16], at: float) -> None:
        rms = math.sqrt(float(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0
        if rms >= LOUD and self._quiet:
            self.arrivals.append(at)
        self._quiet = rms < LOUD


def delays_ms(captured: list[float], arrivals: list[float]) -> list[float]:
    """Each arrival paired with the latest capture before it (bursts are 500 ms apart)."""
    delays: list[float] = []
    for arrival in arrivals:
        earlier = [c for c in captured if c <= arrival]
        if earlier and arrival - earlier[-1] < PERIOD_FRAMES * 0.02:
            delays.append((arrival - earlier[-1]) * 1000.0)
    return delays


async def answer_stock(offer: str, detector: OnsetDetector) -> tuple[str, Callable[[], object]]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tasks: list[asyncio.Task[None]] = []

    async def read(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.AudioFrame)
                left = frame.to_ndarray().reshape(-1, frame.layout.nb_channels)[:, 0]
                detector.frame(np.ascontiguousarray(left), time.monotonic())

    pc.on("track", lambda track: tasks.append(asyncio.create_task(read(track))))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    pc.addTrack(LoopingPcmTrack(np.zeros(FRAME_SAMPLES, dtype=np.int16)))
    offer_loopback_candidates(pc)
    await pc.setLocalDescription(await pc.createAnswer())

    async def close() -> None:
        await pc.close()
        for task in tasks:
            task.cancel()

    return pc.localDescription.sdp, close


async def answer_ours(offer: str, detector: OnsetDetector) -> tuple[str, Callable[[], object]]:
    clock = MediaClock()
    leg = await WebRtcLeg.answer(offer, clock=clock, allow_loopback=True)

    async def consume() -> None:
        async for event in leg.events():
            if isinstance(event, AudioIn):
                detector.frame(event.pcm, event.received_at)
            elif isinstance(event, LegEnded):
                return

    task = asyncio.create_task(consume())

    async def close() -> None:
        await leg.close()
        await task

    return leg.answer_sdp, close


async def one_round(variant: str, seconds: float) -> list[float]:
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = CapturingTrack(burst_pattern())
    offerer.addTrack(track)
    offer_loopback_candidates(offerer)
    await offerer.setLocalDescription(await offerer.createOffer())
    detector = OnsetDetector()
    answer = answer_stock if variant == "stock" else answer_ours
    answer_sdp, close = await answer(offerer.localDescription.sdp, detector)
    await offerer.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
    await asyncio.sleep(seconds)
    await offerer.close()
    result = close()
    if asyncio.iscoroutine(result):
        await result
    return delays_ms(track.captured, detector.arrivals)[1:]  # the first burst meets set-up


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else math.nan


async def run(args: argparse.Namespace) -> None:
    p50: dict[str, list[float]] = {v: [] for v in VARIANTS}
    p99: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for number in range(args.rounds):
        for variant in VARIANTS:
            delays = await one_round(variant, args.seconds)
            p50[variant].append(percentile(delays, 50))
            p99[variant].append(percentile(delays, 99))
            print(
                f"  round {number + 1} {variant:<5}  bursts {len(delays):3d}"
                f"  delay p50 {p50[variant][-1]:6.1f} ms  p99 {p99[variant][-1]:6.1f} ms",
                flush=True,
            )
    print(f"\nmedians over {args.rounds} rounds, capture -> delivered to the answering side:")
    for variant, label in (("stock", "stock aiortc receiver"), ("ours", "WebRtcLeg")):
        print(
            f"  {label:<22} p50 {statistics.median(p50[variant]):6.1f} ms"
            f"  p99 {statistics.median(p99[variant]):6.1f} ms"
        )
    saved = statistics.median(p50["stock"]) - statistics.median(p50["ours"])
    print(f"  WebRtcLeg hears the caller {saved:.1f} ms sooner (p50)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
