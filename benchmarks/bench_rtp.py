"""Cost of the plain-RTP media path per codec, per 20 ms frame and per call-second.

Run: ``python benchmarks/bench_rtp.py``. Outbound is what ``RtpLeg.send_frame``
does per tick: encode one frame and serialise the RTP packet. Inbound is what a
received datagram costs before it becomes ``AudioIn``: parse the RTP header,
pass the reorder window, decode, cut into 20 ms frames. Socket I/O is not
included (see bench_audio for the clock, the notes for asyncio UDP costs).

Each repeat streams one call-second (50 frames) of speech-like audio through
a per-call codec instance; the printed figures are medians over the repeats.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import numpy as np
from aiortc.rtp import RtpPacket
from numpy.typing import NDArray

from telephony_agent.audio.playout import Frame
from telephony_agent.media.rtp.codecs import CODEC_NAMES, make_codec
from telephony_agent.media.rtp.packetizer import Packetizer
from telephony_agent.media.rtp.receiver import InboundStream

FRAMES_PER_SECOND = 50
PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8, "G722": 9, "opus": 111}
RNG = np.random.default_rng(20)


def speechlike(rate: int, seconds: float) -> NDArray[np.int16]:
    """Band-limited noise with a syllable-rate envelope: realistic values, not a pure tone."""
    n = round(rate * seconds)
    white = RNG.normal(0.0, 1.0, n)
    kernel = np.hanning(9)
    shaped = np.convolve(white, kernel / kernel.sum(), mode="same")
    envelope = 0.55 + 0.45 * np.sin(2 * math.pi * 4.0 * np.arange(n) / rate)
    return np.clip(shaped * envelope * 12000.0, -32768, 32767).astype(np.int16)


def median_per_second_us(run_one_second: Callable[[int], None], repeats: int) -> float:
    """Median wall time of `run_one_second(i)` in microseconds (one warm-up run first)."""
    run_one_second(0)
    samples = []
    for i in range(1, repeats + 1):
        start = time.perf_counter_ns()
        run_one_second(i)
        samples.append((time.perf_counter_ns() - start) / 1000.0)
    return statistics.median(samples)


def bench_codec(name: str, repeats: int) -> tuple[float, float]:
    """(outbound, inbound) microseconds per call-second."""
    pt = PAYLOAD_TYPES[name]
    probe = make_codec(name)
    n = probe.frame_samples
    seconds = repeats + 1
    audio = speechlike(probe.sample_rate, seconds).reshape(-1, n)
    frames = [Frame(row, "item", True) for row in audio]

    sender = Packetizer(make_codec(name), pt)

    def send_second(i: int) -> None:
        for frame in frames[i * FRAMES_PER_SECOND : (i + 1) * FRAMES_PER_SECOND]:
            sender.packetize(frame)

    outbound = median_per_second_us(send_second, repeats)

    recorder = Packetizer(make_codec(name), pt)
    datagrams = [recorder.packetize(frame) for frame in frames]
    packets = [d for d in datagrams if d is not None]
    stream = InboundStream(make_codec(name), pt)

    def receive_second(i: int) -> None:
        now = float(i)
        for data in packets[i * FRAMES_PER_SECOND : (i + 1) * FRAMES_PER_SECOND]:
            stream.push(RtpPacket.parse(data), now)

    inbound = median_per_second_us(receive_second, repeats)
    assert stream.stats.lost == 0 and stream.stats.packets_in == len(packets)
    return outbound, inbound


def main() -> None:
    print("RTP media path, medians per call-second (50 frames of 20 ms); µs/frame in brackets")
    header = ("codec", "outbound (encode+serialize)", "inbound (parse+reorder+decode)")
    print(f"{header[0]:<6} {header[1]:>30} {header[2]:>32}")
    for name in CODEC_NAMES:
        repeats = 40 if name in ("PCMU", "PCMA") else 15
        outbound, inbound = bench_codec(name, repeats)
        out_cell = f"{outbound:8.0f} µs  [{outbound / FRAMES_PER_SECOND:6.1f}]"
        in_cell = f"{inbound:8.0f} µs  [{inbound / FRAMES_PER_SECOND:6.1f}]"
        print(f"{name:<6} {out_cell:>30} {in_cell:>32}")
    total_g711 = sum(bench_codec("PCMU", 40))
    print(
        f"\nPCMU both directions: {total_g711 / 1000:.2f} ms CPU per call-second "
        f"→ ≈ {1e6 / total_g711:.0f} calls per core for the RTP media path alone"
    )


if __name__ == "__main__":
    main()
