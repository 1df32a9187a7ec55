"""Cost of the audio DSP core per 20 ms frame, per call-second, and the shared clock's jitter.

Run: ``python benchmarks/bench_audio.py``. Prints medians (time.perf_counter_ns over
batches of calls), the derived CPU cost of one G.711 call's audio path per second of
call, MediaClock lateness with hundreds of subscribers, and swresample (PyAV) as the
peer for the inbound resampler: speed ratio, latency and image rejection.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
from collections.abc import Callable

import av
import numpy as np
import structlog
from numpy.typing import NDArray

from telephony_agent.audio.clock import LatenessStats, MediaClock
from telephony_agent.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from telephony_agent.audio.playout import PlayoutBuffer
from telephony_agent.audio.resample import InboundResampler, OutboundResampler

FRAMES_PER_SECOND = 50
MODEL_RATE = 24000
RNG = np.random.default_rng(20)


def speechlike(rate: int, seconds: float) -> NDArray[np.int16]:
    """Band-limited noise with a syllable-rate envelope: realistic values, not a pure tone."""
    n = round(rate * seconds)
    white = RNG.normal(0.0, 1.0, n)
    kernel = np.hanning(9)
    shaped = np.convolve(white, kernel / kernel.sum(), mode="same")
    envelope = 0.55 + 0.45 * np.sin(2 * math.pi * 4.0 * np.arange(n) / rate)
    return np.clip(shaped * envelope * 12000.0, -32768, 32767).astype(np.int16)


def median_us(fn: Callable[[], object], *, batch: int = 20, repeats: int = 300) -> float:
    """Median over `repeats` batches of the per-call time, in microseconds."""
    for _ in range(batch):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter_ns() - start) / batch)
    return statistics.median(samples) / 1000.0


def cycling(frames: list[NDArray[np.int16]]) -> Callable[[], NDArray[np.int16]]:
    """Return the frames one after another, forever (so a streaming resampler sees a stream)."""
    state = {"i": 0}

    def next_frame() -> NDArray[np.int16]:
        i = state["i"]
        state["i"] = (i + 1) % len(frames)
        return frames[i]

    return next_frame


def feeding(
    process: Callable[[NDArray[np.int16]], NDArray[np.int16]],
    source: Callable[[], NDArray[np.int16]],
) -> Callable[[], NDArray[np.int16]]:
    """One benchmark step: feed the next frame of `source` to `process`."""
    return lambda: process(source())


def split(pcm: NDArray[np.int16], size: int) -> list[NDArray[np.int16]]:
    return [pcm[i : i + size] for i in range(0, pcm.size - size + 1, size)]


def row(name: str, value: float, unit: str = "µs/frame") -> None:
    print(f"  {name:<44} {value:9.2f} {unit}")


# --------------------------------------------------------------------------- codecs


def bench_g711() -> dict[str, float]:
    frames = split(speechlike(8000, 2.0), 160)
    codes = [ulaw_encode(f).tobytes() for f in frames]
    acodes = [alaw_encode(f).tobytes() for f in frames]
    pcm, ucodes, a_codes = cycling(frames), cycling_bytes(codes), cycling_bytes(acodes)
    results = {
        "ulaw_encode": median_us(lambda: ulaw_encode(pcm())),
        "ulaw_decode": median_us(lambda: ulaw_decode(ucodes())),
        "alaw_encode": median_us(lambda: alaw_encode(pcm())),
        "alaw_decode": median_us(lambda: alaw_decode(a_codes())),
    }
    print("G.711, 20 ms at 8 kHz (160 samples)")
    for name, value in results.items():
        row(name, value)
    return results


def cycling_bytes(items: list[bytes]) -> Callable[[], bytes]:
    state = {"i": 0}

    def next_item() -> bytes:
        i = state["i"]
        state["i"] = (i + 1) % len(items)
        return items[i]

    return next_item


# --------------------------------------------------------------------------- resamplers


def bench_inbound() -> dict[int, float]:
    print("Inbound resampler (polyphase FIR, constant size), 20 ms frame → 24 kHz")
    results = {}
    for rate in (8000, 16000, 48000):
        resampler = InboundResampler(rate, MODEL_RATE)
        source = cycling(split(speechlike(rate, 2.0), rate // FRAMES_PER_SECOND))
        results[rate] = median_us(feeding(resampler.process, source))
        row(f"{rate} → 24000 (delay {resampler.delay_ms:.2f} ms)", results[rate])
    return results


def bench_outbound() -> dict[int, float]:
    print("Outbound resampler (soxr HQ stream), 20 ms of model audio at 24 kHz")
    results = {}
    for rate in (8000, 16000, 48000):
        resampler = OutboundResampler(MODEL_RATE, rate)
        source = cycling(split(speechlike(MODEL_RATE, 2.0), MODEL_RATE // FRAMES_PER_SECOND))
        results[rate] = median_us(feeding(resampler.process, source))
        row(f"24000 → {rate}", results[rate])
    flusher = OutboundResampler(MODEL_RATE, 8000)
    chunk = speechlike(MODEL_RATE, 0.2)

    def response() -> None:
        flusher.process(chunk)
        flusher.flush()

    row(
        "one 200 ms response incl. flush (→ 8000)",
        median_us(response, batch=5, repeats=100),
        "µs/response",
    )
    return results


def bench_playout() -> float:
    buffer = PlayoutBuffer(8000)
    source = cycling(split(speechlike(8000, 2.0), 160))

    def push_pop() -> None:
        buffer.push(source(), "item")
        buffer.pop_frame()

    value = median_us(push_pop)
    print("PlayoutBuffer at 8 kHz")
    row("push 20 ms + pop_frame", value)
    return value


# --------------------------------------------------------------------------- peer


def bench_swresample(ours_us: float) -> None:
    """PyAV's swresample for inbound 8 → 24 kHz: speed, latency, image rejection."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=MODEL_RATE)
    source = cycling(split(speechlike(8000, 2.0), 160))

    def step() -> NDArray[np.int16]:
        frame = av.AudioFrame.from_ndarray(source().reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 8000
        outs = resampler.resample(frame)
        return np.concatenate([_samples(o) for o in outs])

    theirs = median_us(step)
    print("Peer: av.AudioResampler (swresample) 8000 → 24000, numpy in/out")
    row("per 20 ms frame", theirs)
    row("ratio swresample / ours", theirs / ours_us, "x")

    ours_delay, ours_image = _measure_inbound(lambda pcm: _run_ours(pcm))
    their_delay, their_image = _measure_inbound(_run_swresample)
    row("stream latency, ours", ours_delay, "ms")
    row("stream latency, swresample", their_delay, "ms")
    row("3.9 kHz tone → 4.1 kHz image, ours", ours_image, "dB")
    row("3.9 kHz tone → 4.1 kHz image, swresample", their_image, "dB")


def _samples(frame: av.AudioFrame) -> NDArray[np.int16]:
    return np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1)


def _run_ours(pcm: NDArray[np.int16]) -> NDArray[np.int16]:
    resampler = InboundResampler(8000, MODEL_RATE)
    return np.concatenate([resampler.process(f) for f in split(pcm, 160)])


def _run_swresample(pcm: NDArray[np.int16]) -> NDArray[np.int16]:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=MODEL_RATE)
    pieces: list[NDArray[np.int16]] = []
    for chunk in split(pcm, 160):
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 8000
        pieces.extend(_samples(o) for o in resampler.resample(frame))
    return np.concatenate(pieces).astype(np.int16)


def _measure_inbound(run: Callable[[NDArray[np.int16]], NDArray[np.int16]]) -> tuple[float, float]:
    """(stream latency of an impulse in ms, level of the 4.1 kHz image of a 3.9 kHz tone in dB).

    Latency counts the samples a resampler still holds back at the end of the stream
    (swresample drops its delay from the first frame instead of delaying the output).
    """
    impulse = np.zeros(8000 // 5, dtype=np.int16)
    impulse[400] = 20000
    out = run(impulse)
    held_back = 3 * impulse.size - out.size
    delay_ms = (int(np.argmax(np.abs(out))) + held_back - 3 * 400) * 1000.0 / MODEL_RATE
    t = np.arange(8000) / 8000.0
    tone = np.round(10000.0 * np.sin(2 * math.pi * 3900.0 * t)).astype(np.int16)
    y = run(tone)[MODEL_RATE // 10 :].astype(np.float64)
    window = np.blackman(y.size) ** 2  # squared Blackman: sidelobes far below -100 dB
    mags = np.abs(np.fft.rfft(y * window)) * 2.0 / window.sum()
    freqs = np.fft.rfftfreq(y.size, 1.0 / MODEL_RATE)
    image = float(mags[np.abs(freqs - 4100.0) <= 8.0].max())
    return delay_ms, 20.0 * math.log10(max(image, 1e-9) / 10000.0)


# --------------------------------------------------------------------------- clock


def _counter_tick(speech: NDArray[np.int16]) -> Callable[[int], None]:
    """Trivial work: remember the tick number."""
    last = [0]

    def tick(n: int) -> None:
        last[0] = n

    return tick


def _leg_tick(speech: NDArray[np.int16]) -> Callable[[int], None]:
    """One G.711 leg's outbound tick: pop a frame from its playout buffer and encode it."""
    buffer = PlayoutBuffer(8000)
    buffer.push(speech, "item")

    def tick(n: int) -> None:
        ulaw_encode(buffer.pop_frame().pcm)

    return tick


async def clock_lateness(subscribers: int, seconds: float, work: str) -> LatenessStats:
    clock = MediaClock(20)
    speech = speechlike(8000, seconds + 1.0)
    make = _counter_tick if work == "trivial" else _leg_tick
    callbacks = [make(speech) for _ in range(subscribers)]
    subscriptions = [clock.subscribe(callback) for callback in callbacks]
    await asyncio.sleep(0.2)
    clock.reset_stats()
    await asyncio.sleep(seconds)
    stats = clock.lateness_stats()
    for subscription in subscriptions:
        subscription.cancel()
    return stats


def bench_clock() -> None:
    print("MediaClock (20 ms), lateness of ticks vs absolute deadlines")
    for work in ("trivial", "pop+encode"):
        stats = asyncio.run(clock_lateness(250, 3.0, work))
        print(
            f"  250 subscribers, {work:<10} ticks={stats.count:4d}  p50={stats.p50_ms:6.3f} ms"
            f"  p99={stats.p99_ms:6.3f} ms  max={stats.max_ms:6.3f} ms"
        )


# --------------------------------------------------------------------------- main


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    started = time.perf_counter()
    g711 = bench_g711()
    inbound = bench_inbound()
    outbound = bench_outbound()
    playout = bench_playout()

    per_frame = g711["ulaw_decode"] + inbound[8000] + outbound[8000] + g711["ulaw_encode"] + playout
    print("G.711 call audio path (decode + inbound + outbound + encode + playout)")
    row("per 20 ms frame", per_frame)
    row("per call-second (50 frames)", per_frame * FRAMES_PER_SECOND, "µs")
    row("calls per core (audio DSP only)", 1e6 / (per_frame * FRAMES_PER_SECOND), "calls")

    bench_swresample(inbound[8000])
    bench_clock()
    print(f"done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
