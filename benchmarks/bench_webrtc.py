"""CPU per call-second of a WebRTC call: aiortc's stock audio path against WebRtcLeg.

Run: ``python benchmarks/bench_webrtc.py [--seconds 10] [--calls 4] [--rounds 3]
[--source tone|sample]``.

Setup: K concurrent calls on loopback. The offering side is plain aiortc: one
``RTCPeerConnection`` per call with a track that plays 20 ms frames of the
source (a 440 Hz tone or the bundled ``book_flight.wav``) in real time, and a
task draining what it receives. The answering side is, per round, either

* ``stock``: a plain aiortc answerer as aiortc's examples write one: a
  ``MediaStreamTrack`` producing ``av.AudioFrame`` s and pacing itself with
  ``asyncio.sleep`` (like ``aiortc.mediastreams.AudioStreamTrack``), and a task
  per call reading the remote track and converting each frame to mono numpy;
* ``ours``: ``WebRtcLeg.answer`` with one shared ``MediaClock`` whose tick
  calls ``send_frame`` on every leg, and a task per call draining ``events()``.

What is counted: the offering side runs in a child process, so the answering
side's figure is exactly ``time.process_time()`` of this process (all threads:
aiortc decodes in a thread per receiver and the stock sender encodes in a
thread pool) over the measured window, divided by calls x wall seconds. It
contains everything an answering server pays per call: ICE, DTLS-SRTP, RTP
and RTCP, Opus decode and encode, the leg or the stock track, and the
workload driver (clock or sleeping track, the draining task). Signalling and
connection set-up are outside the window (one second of warm-up first). The
offering process's CPU is printed for scale; it is the same code in both
variants. Frames received per call-second in each direction show that both
ends really carried audio (50 is real time).

``--floor`` adds a third variant measured in the same run: per call one UDP
socket that receives a datagram and sends one every 20 ms on the shared clock,
no media work at all. It is what this event loop on this machine costs per
call before aiortc or a codec does anything, and it explains most of why a
lone call costs more per call-second than several: a single call pays every
wake-up alone.

Typical result on a 2-core CI-class machine (tone unless noted, 8 s x 3
rounds, medians): 4 calls stock ~78 ms, WebRtcLeg ~27 ms (2.9x), floor ~4 ms;
8 calls (speech sample) ~68 vs ~25 ms (2.8x); 1 call ~83 vs ~45 ms (1.9x),
floor ~14 ms. Where WebRtcLeg's time goes: Opus through libopus (~70 us to
encode and ~30 us to decode a frame), and aiortc's own per-packet path (ICE,
SRTP, RTP objects, its sender task) plus asyncio wake-ups. Inbound packets do
not go through aiortc's receiver (see ``telephony_agent.media.webrtc.rtp_tap``).

ICE: both sides offer 127.0.0.1 (see ``telephony_agent.media.webrtc.loopback``),
also for the stock answerer, so the calls connect on a host with only
loopback; that changes gathering, not the per-packet media path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import multiprocessing
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import av
import numpy as np
import structlog
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from numpy.typing import NDArray

from telephony_agent.audio.clock import MediaClock
from telephony_agent.audio.playout import Frame
from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.media.leg import AudioIn, LegEnded
from telephony_agent.media.webrtc import WebRtcLeg
from telephony_agent.media.webrtc.loopback import offer_loopback_candidates
from telephony_agent.media.webrtc.tracks import LoopingPcmTrack

RATE = 48000
FRAME = 960
WARM_UP_S = 1.0
VARIANTS = ("stock", "ours")
FLOOR = "floor"


def source_audio(kind: str) -> NDArray[np.int16]:
    """Ten seconds of tone, or the bundled sample at 48 kHz, as whole 20 ms frames."""
    if kind == "sample":
        pcm = decode_audio_file(
            Path(str(files("telephony_agent") / "samples" / "book_flight.wav")), RATE
        )
    else:
        t = np.arange(RATE * 10)
        pcm = (np.sin(2 * math.pi * 440.0 * t / RATE) * 8000.0).astype(np.int16)
    return pcm[: pcm.size - pcm.size % FRAME]


async def drain(track: MediaStreamTrack, counter: list[int], to_numpy: bool) -> None:
    """Read a remote track to the end, counting frames (and converting, as a consumer would)."""
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            if to_numpy and isinstance(frame, av.AudioFrame):
                frame.to_ndarray().reshape(-1, 2)[:, 0].copy()
            counter[0] += 1


# ---------------------------------------------------------------------- offering process


def offerer_main(conn: Connection, source: str) -> None:
    """Child process: offers calls on request and reports its CPU and frames received."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(_offerer(conn, source_audio(source)))


async def _offerer(conn: Connection, pcm: NDArray[np.int16]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command is None:
            return
        variant, calls = command
        if variant == FLOOR:
            await _floor_peer(conn, calls)
            continue
        pcs: list[RTCPeerConnection] = []
        counters: list[list[int]] = []
        tasks: list[asyncio.Task[None]] = []
        offers: list[str] = []
        for _ in range(calls):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            counter = [0]
            pc.addTrack(LoopingPcmTrack(pcm))

            def on_track(
                track: MediaStreamTrack,
                counter: list[int] = counter,
                tasks: list[asyncio.Task[None]] = tasks,
            ) -> None:
                tasks.append(asyncio.create_task(drain(track, counter, to_numpy=False)))

            pc.on("track", on_track)
            offer_loopback_candidates(pc)
            await pc.setLocalDescription(await pc.createOffer())
            offers.append(pc.localDescription.sdp)
            pcs.append(pc)
            counters.append(counter)
        conn.send(offers)
        answers = await loop.run_in_executor(None, conn.recv)
        for pc, answer in zip(pcs, answers, strict=True):
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        conn.send("started")
        await loop.run_in_executor(None, conn.recv)  # measurement starts
        cpu0, wall0 = time.process_time(), time.perf_counter()
        frames0 = sum(c[0] for c in counters)
        await loop.run_in_executor(None, conn.recv)  # measurement ends
        cpu1, wall1 = time.process_time(), time.perf_counter()
        frames1 = sum(c[0] for c in counters)
        for pc in pcs:
            await pc.close()
        for task in tasks:
            task.cancel()
        conn.send((cpu1 - cpu0, wall1 - wall0, frames1 - frames0))


class _Datagrams(asyncio.DatagramProtocol):
    """Counts datagrams; the floor's stand-in for a media stream."""

    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1


async def _floor_peer(conn: Connection, calls: int) -> None:
    """The floor's far end: one datagram per 20 ms per call, like a browser's RTP."""
    loop = asyncio.get_running_loop()
    endpoints = [
        await loop.create_datagram_endpoint(_Datagrams, local_addr=("127.0.0.1", 0))
        for _ in range(calls)
    ]
    conn.send([t.get_extra_info("sockname")[1] for t, _ in endpoints])
    ports: list[int] = await loop.run_in_executor(None, conn.recv)
    conn.send("started")
    start = loop.time()
    timer: list[asyncio.TimerHandle] = []

    def send(index: int) -> None:
        for (transport, _), port in zip(endpoints, ports, strict=True):
            transport.sendto(b"\x80" * 100, ("127.0.0.1", port))
        timer[:] = [loop.call_at(start + (index + 1) * 0.02, send, index + 1)]

    send(0)
    await loop.run_in_executor(None, conn.recv)  # measurement starts
    cpu0, wall0 = time.process_time(), time.perf_counter()
    frames0 = sum(p.received for _, p in endpoints)
    await loop.run_in_executor(None, conn.recv)  # measurement ends
    cpu1, wall1 = time.process_time(), time.perf_counter()
    frames1 = sum(p.received for _, p in endpoints)
    timer[0].cancel()
    for transport, _ in endpoints:
        transport.close()
    conn.send((cpu1 - cpu0, wall1 - wall0, frames1 - frames0))


# ---------------------------------------------------------------------- answering side


@dataclass
class Calls:
    """The answering side of one round: how to read its counters and how to end it."""

    frames_in: Callable[[], int]
    close: Callable[[], Any]


async def answer_stock(offers: list[str], pcm: NDArray[np.int16]) -> tuple[list[str], Calls]:
    pcs: list[RTCPeerConnection] = []
    counter = [0]
    tasks: list[asyncio.Task[None]] = []
    answers: list[str] = []
    for offer in offers:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        def on_track(track: MediaStreamTrack) -> None:
            tasks.append(asyncio.create_task(drain(track, counter, to_numpy=True)))

        pc.on("track", on_track)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        pc.addTrack(LoopingPcmTrack(pcm))
        offer_loopback_candidates(pc)
        await pc.setLocalDescription(await pc.createAnswer())
        answers.append(pc.localDescription.sdp)
        pcs.append(pc)

    async def close() -> None:
        for pc in pcs:
            await pc.close()
        for task in tasks:
            task.cancel()

    return answers, Calls(lambda: counter[0], close)


async def answer_ours(offers: list[str], pcm: NDArray[np.int16]) -> tuple[list[str], Calls]:
    clock = MediaClock()
    legs = [await WebRtcLeg.answer(offer, clock=clock, allow_loopback=True) for offer in offers]
    frames = [Frame(row, "bench", True) for row in pcm.reshape(-1, FRAME)]
    counter = [0]

    def on_tick(tick: int) -> None:
        frame = frames[tick % len(frames)]
        for leg in legs:
            leg.send_frame(frame)

    async def consume(leg: WebRtcLeg) -> None:
        async for event in leg.events():
            if isinstance(event, AudioIn):
                counter[0] += 1
            elif isinstance(event, LegEnded):
                return

    tasks = [asyncio.create_task(consume(leg)) for leg in legs]
    subscription = clock.subscribe(on_tick)

    async def close() -> None:
        subscription.cancel()
        for leg in legs:
            await leg.close()
        await asyncio.gather(*tasks)

    return [leg.answer_sdp for leg in legs], Calls(lambda: counter[0], close)


@dataclass(frozen=True)
class RoundResult:
    answerer_ms: float
    offerer_ms: float
    frames_in_per_s: float
    frames_out_per_s: float


async def answer_floor(ports: list[int]) -> tuple[list[int], Calls]:
    """The floor: per call a socket that receives one datagram and sends one per clock tick.

    What every call pays on this event loop and machine before any media work:
    the tick, a datagram in and a datagram out every 20 ms.
    """
    loop = asyncio.get_running_loop()
    clock = MediaClock()
    endpoints = [
        await loop.create_datagram_endpoint(_Datagrams, local_addr=("127.0.0.1", 0)) for _ in ports
    ]

    def on_tick(tick: int) -> None:
        del tick
        for (transport, _), port in zip(endpoints, ports, strict=True):
            transport.sendto(b"\x80" * 100, ("127.0.0.1", port))

    subscription = clock.subscribe(on_tick)

    def close() -> None:
        subscription.cancel()
        for transport, _ in endpoints:
            transport.close()

    own = [t.get_extra_info("sockname")[1] for t, _ in endpoints]
    return own, Calls(lambda: sum(p.received for _, p in endpoints), close)


async def one_round(
    conn: Connection, variant: str, calls: int, seconds: float, pcm: NDArray[np.int16]
) -> RoundResult:
    loop = asyncio.get_running_loop()
    conn.send((variant, calls))
    offers = await loop.run_in_executor(None, conn.recv)
    answers: list[str] | list[int]
    if variant == FLOOR:
        answers, answered = await answer_floor(offers)
    else:
        answer = answer_stock if variant == "stock" else answer_ours
        answers, answered = await answer(offers, pcm)
    conn.send(answers)
    await loop.run_in_executor(None, conn.recv)
    await asyncio.sleep(WARM_UP_S)
    conn.send("measure")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    frames0 = answered.frames_in()
    await asyncio.sleep(seconds)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    frames1 = answered.frames_in()
    conn.send("stop")
    offer_cpu, offer_wall, offer_frames = await loop.run_in_executor(None, conn.recv)
    closing = answered.close()
    if asyncio.iscoroutine(closing):
        await closing
    call_seconds = calls * (wall1 - wall0)
    return RoundResult(
        answerer_ms=(cpu1 - cpu0) * 1000.0 / call_seconds,
        offerer_ms=offer_cpu * 1000.0 / (calls * offer_wall),
        frames_in_per_s=(frames1 - frames0) / call_seconds,
        frames_out_per_s=offer_frames / (calls * offer_wall),
    )


async def run(args: argparse.Namespace) -> dict[str, list[RoundResult]]:
    pcm = source_audio(args.source)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=offerer_main, args=(child, args.source), daemon=True)
    process.start()
    variants = (*VARIANTS, FLOOR) if args.floor else VARIANTS
    results: dict[str, list[RoundResult]] = {variant: [] for variant in variants}
    try:
        for number in range(args.rounds):
            for variant in variants:
                result = await one_round(parent, variant, args.calls, args.seconds, pcm)
                results[variant].append(result)
                print(
                    f"  round {number + 1} {variant:<5}  answerer {result.answerer_ms:6.1f} ms"
                    f"  offerer {result.offerer_ms:6.1f} ms per call-second;"
                    f" frames/s in {result.frames_in_per_s:4.1f}"
                    f" out {result.frames_out_per_s:4.1f}",
                    flush=True,
                )
    finally:
        parent.send(None)
        process.join(timeout=10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per round")
    parser.add_argument("--calls", type=int, default=4, help="concurrent calls")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--source", choices=("tone", "sample"), default="tone")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure the floor: a clock tick, a datagram in and one out per call per 20 ms",
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(
        f"{args.calls} concurrent calls on loopback, {args.seconds:g} s measured per round,"
        f" source {args.source}; CPU per call-second of the answering process"
    )
    results = asyncio.run(run(args))
    median = {
        variant: statistics.median(r.answerer_ms for r in rounds)
        for variant, rounds in results.items()
    }
    offerer = statistics.median(r.offerer_ms for rounds in results.values() for r in rounds)
    print(f"\nmedians over {args.rounds} rounds (ms CPU per call-second, answering side):")
    print(f"  stock aiortc answerer   {median['stock']:6.1f}")
    print(f"  WebRtcLeg               {median['ours']:6.1f}")
    print(f"  ratio stock / ours      {median['stock'] / median['ours']:6.2f}x")
    if FLOOR in median:
        print(f"  floor (no media work)   {median[FLOOR]:6.1f}")
    print(f"  (offering process, plain aiortc, for scale: {offerer:.1f})")


if __name__ == "__main__":
    main()
