"""Cost of stereo call recording: the per-tick `add` on the loop, and the writer thread.

Run: ``python benchmarks/bench_recording.py``. Prints medians of 5 runs: microseconds per
`CallRecording.add` (one 20 ms tick, the chunk hand-over amortised in) at 8 and 48 kHz,
and the writer thread's CPU time per second of call with 200 recordings fed tick by tick
at once, written to a temporary folder (so mostly the page cache, not the disk itself).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from telephony_agent.records.recording import CallRecording, RecordingSink

RUNS = 5
RNG = np.random.default_rng(7)


def frames(rate: int, count: int) -> list[NDArray[np.int16]]:
    n = rate // 50
    return list(RNG.integers(-12000, 12000, (count, n)).astype(np.int16))


def add_us(rate: int, folder: Path, ticks: int = 5000) -> float:
    """Microseconds per `add` for one recording, over `ticks` ticks."""
    caller, agent = frames(rate, 64), frames(rate, 64)
    sink = RecordingSink()
    sink.start()
    rec = CallRecording(sink, folder / f"one-{rate}.wav", rate)
    started = time.perf_counter_ns()
    for tick in range(ticks):
        rec.add(caller[tick % 64], agent[tick % 64] if tick % 3 else None)
    elapsed = time.perf_counter_ns() - started
    rec.close()
    sink.close_sync(60)
    return elapsed / ticks / 1000.0


def writer_cpu(rate: int, folder: Path, calls: int = 200, seconds: int = 4) -> tuple[float, int]:
    """Writer CPU microseconds per call-second, and chunks dropped, for `calls` recordings."""
    caller, agent = frames(rate, 50), frames(rate, 50)
    sink = RecordingSink(header_every_s=2.0)
    sink.start()
    recs = [CallRecording(sink, folder / f"call-{i}.wav", rate) for i in range(calls)]
    for tick in range(seconds * 50):  # one tick of every call, as the media clock does
        for rec in recs:
            rec.add(caller[tick % 50], agent[tick % 50])
    for rec in recs:
        rec.close()
    sink.close_sync(300)
    stats = sink.stats
    return stats.writer_cpu_s / (calls * seconds) * 1e6, stats.dropped_chunks


def main() -> None:
    for rate in (8000, 48000):
        adds, cpus, drops = [], [], []
        for _ in range(RUNS):
            with tempfile.TemporaryDirectory() as tmp:
                adds.append(add_us(rate, Path(tmp)))
            with tempfile.TemporaryDirectory() as tmp:
                cpu, dropped = writer_cpu(rate, Path(tmp))
                cpus.append(cpu)
                drops.append(dropped)
        print(
            f"{rate // 1000:>2} kHz: add {statistics.median(adds):6.2f} µs/tick  "
            f"writer {statistics.median(cpus):7.1f} µs CPU per call-second "
            f"(200 calls, dropped chunks per run: {drops})"
        )


if __name__ == "__main__":
    main()
