"""Cost of the plain-RTP media path per codec, per 20 ms frame and per call-second.

Run: ``python benchmarks/bench_rtp.py``. Outbound is what ``RtpLeg.send_frame``
does per tick: encode one frame and serialise the RTP packet. Inbound is what a
received datagram costs before it becomes ``AudioIn``: parse the RTP header,
pass the reorder window, decode, cut into 20 ms frames. Socket I/O is not
included (see bench_audio for the clock, the notes for asyncio UDP costs).

Each repeat streams one call-second (50 frames) of speech-like audio through
a per-call codec instance; the printed figures are medians over the repeats.

Last, Opus alone on both backends (libopus through ctypes, and PyAV's codec
context), measured in the same run with the repeats interleaved so that both
see the same machine: encode and decode per 20 ms frame, and their ratio.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.playout import Frame
from telephony_agent.media.opus_native import libopus_version
from telephony_agent.media.rtp.codecs import CODEC_NAMES, OpusCodec, make_codec
from telephony_agent.media.rtp.packetizer import Packetizer
from telephony_agent.media.rtp.receiver import InboundStream
from telephony_agent.media.rtp.wire import RtpPacket

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


def per_frame_us(runs: dict[str, Callable[[int], None]], repeats: int) -> dict[str, float]:
    """Median µs per frame of each `run(i)` (one call-second), repeats interleaved in turn."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run(0)  # warm-up
    for i in range(1, repeats + 1):
        for name, run in runs.items():
            start = time.perf_counter_ns()
            run(i)
            samples[name].append((time.perf_counter_ns() - start) / 1000.0 / FRAMES_PER_SECOND)
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_opus_backends(
    settings: dict[str, Any], repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """(encode, decode) µs per frame by backend, for OpusCodec with `settings`."""
    seconds = repeats + 1
    frames = speechlike(48000, seconds).reshape(-1, 960)
    # Packets to decode: identical from either backend, so coded once.
    coder = OpusCodec(**settings, backend="pyav")
    packets = [coder.encode(frame) for frame in frames]

    def second(items: list[Any], code: Callable[[Any], object]) -> Callable[[int], None]:
        def run(i: int) -> None:
            for item in items[i * FRAMES_PER_SECOND : (i + 1) * FRAMES_PER_SECOND]:
                code(item)

        return run

    backends = ("native", "pyav")
    encoders = {b: OpusCodec(**settings, backend=b) for b in backends}
    decoders = {b: OpusCodec(**settings, backend=b) for b in backends}
    encode = per_frame_us({b: second(list(frames), encoders[b].encode) for b in backends}, repeats)
    decode = per_frame_us({b: second(packets, decoders[b].decode) for b in backends}, repeats)
    return encode, decode


def print_opus_backends(repeats: int) -> None:
    print(f"\nOpus per 20 ms frame, native ({libopus_version()} via ctypes) vs PyAV, same run")
    print(f"{'settings':<34} {'step':<7} {'native':>9} {'PyAV':>9} {'PyAV/native':>12}")
    configs = {
        "RTP default (audio, 24k, c10)": {},
        "CELT (lowdelay, 32k, c5)": {"application": "lowdelay", "bitrate": 32000, "complexity": 5},
    }
    for label, settings in configs.items():
        encode, decode = bench_opus_backends(settings, repeats)
        for step, figures in (("encode", encode), ("decode", decode)):
            native, pyav = figures["native"], figures["pyav"]
            print(f"{label:<34} {step:<7} {native:6.1f} µs {pyav:6.1f} µs {pyav / native:11.2f}x")


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
    print_opus_backends(30)


if __name__ == "__main__":
    main()
